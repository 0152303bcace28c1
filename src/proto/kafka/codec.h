/* codec.h - the Kafka wire protocol, sans I/O: request framing, request
 * headers v0-v2, the primitive types of both encodings (classic and
 * "flexible": compact strings/arrays with unsigned varints and tagged
 * fields), the table of supported APIs and versions, and one request
 * decoder per API.
 *
 * Nothing here touches a socket. Decoders read from a jn_kreader_t over the
 * bytes of one request (after the header) and fill a request struct whose
 * strings and byte fields are views into those bytes: they stay valid as
 * long as the request bytes do. Arrays are allocated from a jn_karena_t,
 * freed all at once with jn_karena_free. Every count read from the wire is
 * checked against the bytes left before anything is allocated (an element
 * takes at least one byte), and the arena itself has a cap.
 *
 * Responses are encoded with jn_kwriter_t, whose primitives pick the
 * classic or flexible form from |flex|; the handlers (kafka_*.c) write
 * each response field by field, per version.
 */
#ifndef JN_KAFKA_CODEC_H
#define JN_KAFKA_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../../common/buf.h"
#include "../../common/error.h"

/* ---- API keys ---- */
enum jn_kafka_api {
    JN_KAPI_PRODUCE = 0,
    JN_KAPI_FETCH = 1,
    JN_KAPI_LIST_OFFSETS = 2,
    JN_KAPI_METADATA = 3,
    JN_KAPI_OFFSET_COMMIT = 8,
    JN_KAPI_OFFSET_FETCH = 9,
    JN_KAPI_FIND_COORDINATOR = 10,
    JN_KAPI_JOIN_GROUP = 11,
    JN_KAPI_HEARTBEAT = 12,
    JN_KAPI_LEAVE_GROUP = 13,
    JN_KAPI_SYNC_GROUP = 14,
    JN_KAPI_DESCRIBE_GROUPS = 15,
    JN_KAPI_LIST_GROUPS = 16,
    JN_KAPI_SASL_HANDSHAKE = 17,
    JN_KAPI_API_VERSIONS = 18,
    JN_KAPI_CREATE_TOPICS = 19,
    JN_KAPI_DELETE_TOPICS = 20,
    JN_KAPI_INIT_PRODUCER_ID = 22,
    JN_KAPI_DESCRIBE_CONFIGS = 32,
    JN_KAPI_SASL_AUTHENTICATE = 36,
    JN_KAPI_CREATE_PARTITIONS = 37,
};

/* ---- error codes (Kafka's numbering) ---- */
enum jn_kafka_err {
    JN_KERR_UNKNOWN_SERVER_ERROR = -1,
    JN_KERR_NONE = 0,
    JN_KERR_OFFSET_OUT_OF_RANGE = 1,
    JN_KERR_CORRUPT_MESSAGE = 2,
    JN_KERR_UNKNOWN_TOPIC_OR_PARTITION = 3,
    JN_KERR_REQUEST_TIMED_OUT = 7,
    JN_KERR_MESSAGE_TOO_LARGE = 10,
    JN_KERR_COORDINATOR_NOT_AVAILABLE = 15,
    JN_KERR_NOT_COORDINATOR = 16,
    JN_KERR_INVALID_TOPIC_EXCEPTION = 17,
    JN_KERR_ILLEGAL_GENERATION = 22,
    JN_KERR_INCONSISTENT_GROUP_PROTOCOL = 23,
    JN_KERR_INVALID_GROUP_ID = 24,
    JN_KERR_UNKNOWN_MEMBER_ID = 25,
    JN_KERR_INVALID_SESSION_TIMEOUT = 26,
    JN_KERR_REBALANCE_IN_PROGRESS = 27,
    JN_KERR_TOPIC_AUTHORIZATION_FAILED = 29,
    JN_KERR_GROUP_AUTHORIZATION_FAILED = 30,
    JN_KERR_CLUSTER_AUTHORIZATION_FAILED = 31,
    JN_KERR_UNSUPPORTED_SASL_MECHANISM = 33,
    JN_KERR_ILLEGAL_SASL_STATE = 34,
    JN_KERR_UNSUPPORTED_VERSION = 35,
    JN_KERR_TOPIC_ALREADY_EXISTS = 36,
    JN_KERR_INVALID_PARTITIONS = 37,
    JN_KERR_INVALID_REPLICATION_FACTOR = 38,
    JN_KERR_INVALID_REPLICA_ASSIGNMENT = 39,
    JN_KERR_INVALID_CONFIG = 40,
    JN_KERR_INVALID_REQUEST = 42,
    JN_KERR_UNSUPPORTED_FOR_MESSAGE_FORMAT = 43,
    JN_KERR_OUT_OF_ORDER_SEQUENCE_NUMBER = 45,
    JN_KERR_DUPLICATE_SEQUENCE_NUMBER = 46,
    JN_KERR_INVALID_PRODUCER_EPOCH = 47,
    JN_KERR_KAFKA_STORAGE_ERROR = 56,
    JN_KERR_SASL_AUTHENTICATION_FAILED = 58,
    JN_KERR_UNKNOWN_PRODUCER_ID = 59,
    JN_KERR_NON_EMPTY_GROUP = 68,
    JN_KERR_GROUP_ID_NOT_FOUND = 69,
    JN_KERR_UNSUPPORTED_COMPRESSION_TYPE = 76,
    JN_KERR_MEMBER_ID_REQUIRED = 79,
    JN_KERR_INVALID_RECORD = 87,
};

/* ---- versions ---- */
typedef struct jn_kafka_api_range {
    int16_t key;
    int16_t min, max;  /* supported and advertised */
    int16_t flex_min;  /* first flexible version; INT16_MAX: none */
    const char *name;
} jn_kafka_api_range_t;

/* The supported APIs in key order; |*n| gets the count. */
const jn_kafka_api_range_t *jn_kafka_apis(size_t *n);
/* The range of |key|, or NULL when not supported at all. */
const jn_kafka_api_range_t *jn_kafka_api_find(int16_t key);
/* Whether |key| at |version| is within the supported range. */
bool jn_kafka_version_supported(int16_t key, int16_t version);
/* Whether |key| at |version| uses the flexible encoding (by Kafka's
 * schemas, also for versions outside the supported range). */
bool jn_kafka_is_flexible(int16_t key, int16_t version);
/* Response header version: 1 (tagged fields) for flexible versions, except
 * ApiVersions, whose response header is always v0. */
int jn_kafka_response_header_version(int16_t key, int16_t version);

/* ---- framing ---- */

/* Finds one request frame: a 4-byte big-endian size then that many bytes.
 * Returns 0 with *body and *body_len set and *frame_len = 4 + size,
 * JN_EPARTIAL when more bytes are needed (*frame_len then gets the total
 * when the size is known, else 4), JN_ETOOBIG when the size passes
 * |max_size|, JN_EPROTO when it is negative or too small for a header. */
int jn_kafka_frame(const uint8_t *p, size_t len, size_t max_size, const uint8_t **body, size_t *body_len,
                   size_t *frame_len);

/* ---- request header ---- */
typedef struct jn_kstr {
    const char *p; /* view; NULL when null */
    int32_t len;   /* -1 when null */
} jn_kstr_t;

typedef struct jn_kafka_header {
    int16_t api_key;
    int16_t api_version;
    int32_t correlation_id;
    jn_kstr_t client_id;
    bool flexible; /* the request body uses the flexible encoding */
} jn_kafka_header_t;

/* Parses the request header at the start of |body|: v1 (key, version,
 * correlation id, nullable client id) plus, for flexible versions, the
 * tagged fields of v2. Returns the header length, or JN_EPROTO (too short
 * or malformed). Unknown keys and versions are parsed too (as v1) so the
 * caller can answer them. */
int jn_kafka_parse_header(const uint8_t *body, size_t len, jn_kafka_header_t *h);

/* ---- arena ---- */
typedef struct jn_karena_chunk jn_karena_chunk_t;
typedef struct jn_karena {
    jn_karena_chunk_t *head;
    size_t used; /* bytes handed out */
    size_t max;  /* cap */
} jn_karena_t;

void jn_karena_init(jn_karena_t *a, size_t max);
/* Zeroed memory for |n| elements of |size|; NULL over the cap or on ENOMEM. */
void *jn_karena_alloc(jn_karena_t *a, size_t n, size_t size);
void jn_karena_free(jn_karena_t *a);

/* ---- reader ---- */
typedef struct jn_kreader {
    const uint8_t *p;
    const uint8_t *end;
    bool flex;
    int err; /* sticky: 0 or JN_EPROTO; every read after an error returns zeros */
} jn_kreader_t;

void jn_kreader_init(jn_kreader_t *r, const uint8_t *p, size_t len, bool flex);
int8_t jn_kr_i8(jn_kreader_t *r);
int16_t jn_kr_i16(jn_kreader_t *r);
int32_t jn_kr_i32(jn_kreader_t *r);
int64_t jn_kr_i64(jn_kreader_t *r);
bool jn_kr_bool(jn_kreader_t *r);
uint32_t jn_kr_uvarint(jn_kreader_t *r);
void jn_kr_uuid(jn_kreader_t *r, uint8_t out[16]);
/* STRING / COMPACT_STRING (null is an error). */
jn_kstr_t jn_kr_str(jn_kreader_t *r);
/* NULLABLE_STRING / COMPACT_NULLABLE_STRING. */
jn_kstr_t jn_kr_nstr(jn_kreader_t *r);
/* (NULLABLE_)BYTES / COMPACT_(NULLABLE_)BYTES: *len -1 when null. */
const uint8_t *jn_kr_bytes(jn_kreader_t *r, int32_t *len);
/* ARRAY / COMPACT_ARRAY length: -1 when null (allowed only if |nullable|).
 * The count is checked against the bytes left (each element at least
 * |min_elem| bytes). */
int32_t jn_kr_array(jn_kreader_t *r, bool nullable, size_t min_elem);
/* Skips a tagged-field section when flexible (no-op otherwise). */
void jn_kr_tags(jn_kreader_t *r);
size_t jn_kr_left(const jn_kreader_t *r);

/* ---- writer ---- */
typedef struct jn_kwriter {
    jn_buf_t *b;
    bool flex;
    int err; /* sticky: first append error */
} jn_kwriter_t;

void jn_kwriter_init(jn_kwriter_t *w, jn_buf_t *b, bool flex);
void jn_kw_i8(jn_kwriter_t *w, int8_t v);
void jn_kw_i16(jn_kwriter_t *w, int16_t v);
void jn_kw_i32(jn_kwriter_t *w, int32_t v);
void jn_kw_i64(jn_kwriter_t *w, int64_t v);
void jn_kw_bool(jn_kwriter_t *w, bool v);
void jn_kw_uvarint(jn_kwriter_t *w, uint32_t v);
void jn_kw_uuid(jn_kwriter_t *w, const uint8_t v[16]);
void jn_kw_raw(jn_kwriter_t *w, const void *p, size_t n);
/* String from |len| bytes; |p| NULL writes null (nullable fields only). */
void jn_kw_str(jn_kwriter_t *w, const char *p, int32_t len);
void jn_kw_cstr(jn_kwriter_t *w, const char *s); /* NULL -> null */
void jn_kw_bytes(jn_kwriter_t *w, const void *p, int32_t len); /* len -1 -> null */
/* Length prefix of bytes/records written separately with jn_kw_raw. */
void jn_kw_bytes_len(jn_kwriter_t *w, int32_t len);
void jn_kw_array(jn_kwriter_t *w, int32_t n); /* -1 -> null */
void jn_kw_tags(jn_kwriter_t *w); /* empty tagged fields when flexible */

/* ---- requests ---- */

typedef struct jn_kafka_api_versions_req {
    jn_kstr_t client_software_name;    /* v3+ */
    jn_kstr_t client_software_version; /* v3+ */
} jn_kafka_api_versions_req_t;

typedef struct jn_kafka_metadata_req {
    int32_t ntopics;  /* -1: all topics (v1+ null, v0 empty) */
    jn_kstr_t *topics;
    bool allow_auto_create; /* v4+; true before */
} jn_kafka_metadata_req_t;

typedef struct jn_kafka_produce_part {
    int32_t index;
    const uint8_t *records; /* NULL when null */
    int32_t records_len;
} jn_kafka_produce_part_t;
typedef struct jn_kafka_produce_topic {
    jn_kstr_t name;
    int32_t nparts;
    jn_kafka_produce_part_t *parts;
} jn_kafka_produce_topic_t;
typedef struct jn_kafka_produce_req {
    jn_kstr_t transactional_id;
    int16_t acks;
    int32_t timeout_ms;
    int32_t ntopics;
    jn_kafka_produce_topic_t *topics;
} jn_kafka_produce_req_t;

typedef struct jn_kafka_fetch_part {
    int32_t partition;
    int32_t current_leader_epoch; /* v9+ */
    int64_t fetch_offset;
    int64_t log_start_offset; /* v5+ */
    int32_t max_bytes;
} jn_kafka_fetch_part_t;
typedef struct jn_kafka_fetch_topic {
    jn_kstr_t name;      /* v0-12 */
    uint8_t topic_id[16]; /* v13+ */
    int32_t nparts;
    jn_kafka_fetch_part_t *parts;
} jn_kafka_fetch_topic_t;
typedef struct jn_kafka_fetch_req {
    int32_t replica_id;
    int32_t max_wait_ms;
    int32_t min_bytes;
    int32_t max_bytes;       /* v3+; INT32_MAX before */
    int8_t isolation_level;  /* v4+ */
    int32_t session_id;      /* v7+ */
    int32_t session_epoch;   /* v7+ */
    int32_t ntopics;
    jn_kafka_fetch_topic_t *topics;
    jn_kstr_t rack_id;       /* v11+ */
} jn_kafka_fetch_req_t;

typedef struct jn_kafka_list_offsets_part {
    int32_t partition;
    int32_t current_leader_epoch; /* v4+ */
    int64_t timestamp;            /* -1 latest, -2 earliest, -3 max timestamp */
} jn_kafka_list_offsets_part_t;
typedef struct jn_kafka_list_offsets_topic {
    jn_kstr_t name;
    int32_t nparts;
    jn_kafka_list_offsets_part_t *parts;
} jn_kafka_list_offsets_topic_t;
typedef struct jn_kafka_list_offsets_req {
    int32_t replica_id;
    int8_t isolation_level; /* v2+ */
    int32_t ntopics;
    jn_kafka_list_offsets_topic_t *topics;
} jn_kafka_list_offsets_req_t;

typedef struct jn_kafka_find_coordinator_req {
    int8_t key_type;  /* v1+: 0 group, 1 transaction */
    int32_t nkeys;    /* v0-3: 1 (the key); v4+: coordinator_keys */
    jn_kstr_t *keys;
} jn_kafka_find_coordinator_req_t;

typedef struct jn_kafka_protocol {
    jn_kstr_t name;
    const uint8_t *metadata;
    int32_t metadata_len;
} jn_kafka_protocol_t;
typedef struct jn_kafka_join_group_req {
    jn_kstr_t group_id;
    int32_t session_timeout_ms;
    int32_t rebalance_timeout_ms; /* v1+; = session timeout before */
    jn_kstr_t member_id;
    jn_kstr_t group_instance_id;  /* v5+ */
    jn_kstr_t protocol_type;
    int32_t nprotocols;
    jn_kafka_protocol_t *protocols;
    jn_kstr_t reason;             /* v8+ */
} jn_kafka_join_group_req_t;

typedef struct jn_kafka_assignment {
    jn_kstr_t member_id;
    const uint8_t *assignment;
    int32_t assignment_len;
} jn_kafka_assignment_t;
typedef struct jn_kafka_sync_group_req {
    jn_kstr_t group_id;
    int32_t generation_id;
    jn_kstr_t member_id;
    jn_kstr_t group_instance_id; /* v3+ */
    jn_kstr_t protocol_type;     /* v5+ */
    jn_kstr_t protocol_name;     /* v5+ */
    int32_t nassignments;
    jn_kafka_assignment_t *assignments;
} jn_kafka_sync_group_req_t;

typedef struct jn_kafka_heartbeat_req {
    jn_kstr_t group_id;
    int32_t generation_id;
    jn_kstr_t member_id;
    jn_kstr_t group_instance_id; /* v3+ */
} jn_kafka_heartbeat_req_t;

typedef struct jn_kafka_leave_member {
    jn_kstr_t member_id;
    jn_kstr_t group_instance_id;
} jn_kafka_leave_member_t;
typedef struct jn_kafka_leave_group_req {
    jn_kstr_t group_id;
    int32_t nmembers; /* v0-2: 1, the member_id */
    jn_kafka_leave_member_t *members;
} jn_kafka_leave_group_req_t;

typedef struct jn_kafka_commit_part {
    int32_t partition;
    int64_t offset;
    int32_t leader_epoch; /* v6+ */
    jn_kstr_t metadata;
} jn_kafka_commit_part_t;
typedef struct jn_kafka_commit_topic {
    jn_kstr_t name;
    int32_t nparts;
    jn_kafka_commit_part_t *parts;
} jn_kafka_commit_topic_t;
typedef struct jn_kafka_offset_commit_req {
    jn_kstr_t group_id;
    int32_t generation_id; /* v1+; -1 before */
    jn_kstr_t member_id;   /* v1+ */
    jn_kstr_t group_instance_id; /* v7+ */
    int32_t ntopics;
    jn_kafka_commit_topic_t *topics;
} jn_kafka_offset_commit_req_t;

typedef struct jn_kafka_ofetch_topic {
    jn_kstr_t name;
    int32_t nparts;
    int32_t *parts;
} jn_kafka_ofetch_topic_t;
typedef struct jn_kafka_ofetch_group {
    jn_kstr_t group_id;
    int32_t ntopics; /* -1: all (v2+) */
    jn_kafka_ofetch_topic_t *topics;
} jn_kafka_ofetch_group_t;
typedef struct jn_kafka_offset_fetch_req {
    int32_t ngroups; /* v0-7: 1 */
    jn_kafka_ofetch_group_t *groups;
    bool require_stable; /* v7+ */
} jn_kafka_offset_fetch_req_t;

typedef struct jn_kafka_describe_groups_req {
    int32_t ngroups;
    jn_kstr_t *groups;
    bool include_authorized_operations; /* v3+ */
} jn_kafka_describe_groups_req_t;

typedef struct jn_kafka_list_groups_req {
    int32_t nstates; /* v4+ states filter; 0 = all */
    jn_kstr_t *states;
} jn_kafka_list_groups_req_t;

typedef struct jn_kafka_config_kv {
    jn_kstr_t name;
    jn_kstr_t value;
} jn_kafka_config_kv_t;
typedef struct jn_kafka_create_topic {
    jn_kstr_t name;
    int32_t num_partitions;     /* -1: broker default (v4+) */
    int16_t replication_factor; /* -1: broker default (v4+) */
    int32_t nassignments;
    int32_t nconfigs;
    jn_kafka_config_kv_t *configs;
} jn_kafka_create_topic_t;
typedef struct jn_kafka_create_topics_req {
    int32_t ntopics;
    jn_kafka_create_topic_t *topics;
    int32_t timeout_ms;
    bool validate_only; /* v1+ */
} jn_kafka_create_topics_req_t;

typedef struct jn_kafka_delete_topic {
    jn_kstr_t name; /* null with a topic id (v6+) */
    uint8_t topic_id[16];
} jn_kafka_delete_topic_t;
typedef struct jn_kafka_delete_topics_req {
    int32_t ntopics;
    jn_kafka_delete_topic_t *topics;
    int32_t timeout_ms;
} jn_kafka_delete_topics_req_t;

typedef struct jn_kafka_create_partitions_topic {
    jn_kstr_t name;
    int32_t count;
    int32_t nassignments; /* -1: null */
} jn_kafka_create_partitions_topic_t;
typedef struct jn_kafka_create_partitions_req {
    int32_t ntopics;
    jn_kafka_create_partitions_topic_t *topics;
    int32_t timeout_ms;
    bool validate_only;
} jn_kafka_create_partitions_req_t;

typedef struct jn_kafka_config_resource {
    int8_t type; /* 2 topic, 4 broker, 8 broker logger */
    jn_kstr_t name;
    int32_t nkeys; /* -1: all */
    jn_kstr_t *keys;
} jn_kafka_config_resource_t;
typedef struct jn_kafka_describe_configs_req {
    int32_t nresources;
    jn_kafka_config_resource_t *resources;
    bool include_synonyms;      /* v1+ */
    bool include_documentation; /* v3+ */
} jn_kafka_describe_configs_req_t;

typedef struct jn_kafka_init_producer_id_req {
    jn_kstr_t transactional_id;
    int32_t transaction_timeout_ms;
    int64_t producer_id;    /* v3+; -1 before */
    int16_t producer_epoch; /* v3+; -1 before */
} jn_kafka_init_producer_id_req_t;

typedef struct jn_kafka_sasl_handshake_req {
    jn_kstr_t mechanism;
} jn_kafka_sasl_handshake_req_t;

typedef struct jn_kafka_sasl_authenticate_req {
    const uint8_t *auth_bytes;
    int32_t auth_len;
} jn_kafka_sasl_authenticate_req_t;

/* Decoders: |r| is a reader over the request body after the header
 * (flexible per the header), |version| the request's version (within the
 * supported range). Each returns 0 with |out| filled, JN_EPROTO for
 * malformed or truncated input (including trailing garbage inside the
 * frame is tolerated, as Kafka does not check it), JN_ENOMEM when the
 * arena is full. Views point into the reader's bytes; arrays live in |a|. */
int jn_kafka_decode_api_versions(jn_kreader_t *r, int16_t version, jn_karena_t *a,
                                 jn_kafka_api_versions_req_t *out) JN_MUST_CHECK;
int jn_kafka_decode_metadata(jn_kreader_t *r, int16_t version, jn_karena_t *a,
                             jn_kafka_metadata_req_t *out) JN_MUST_CHECK;
int jn_kafka_decode_produce(jn_kreader_t *r, int16_t version, jn_karena_t *a,
                            jn_kafka_produce_req_t *out) JN_MUST_CHECK;
int jn_kafka_decode_fetch(jn_kreader_t *r, int16_t version, jn_karena_t *a,
                          jn_kafka_fetch_req_t *out) JN_MUST_CHECK;
int jn_kafka_decode_list_offsets(jn_kreader_t *r, int16_t version, jn_karena_t *a,
                                 jn_kafka_list_offsets_req_t *out) JN_MUST_CHECK;
int jn_kafka_decode_find_coordinator(jn_kreader_t *r, int16_t version, jn_karena_t *a,
                                     jn_kafka_find_coordinator_req_t *out) JN_MUST_CHECK;
int jn_kafka_decode_join_group(jn_kreader_t *r, int16_t version, jn_karena_t *a,
                               jn_kafka_join_group_req_t *out) JN_MUST_CHECK;
int jn_kafka_decode_sync_group(jn_kreader_t *r, int16_t version, jn_karena_t *a,
                               jn_kafka_sync_group_req_t *out) JN_MUST_CHECK;
int jn_kafka_decode_heartbeat(jn_kreader_t *r, int16_t version, jn_karena_t *a,
                              jn_kafka_heartbeat_req_t *out) JN_MUST_CHECK;
int jn_kafka_decode_leave_group(jn_kreader_t *r, int16_t version, jn_karena_t *a,
                                jn_kafka_leave_group_req_t *out) JN_MUST_CHECK;
int jn_kafka_decode_offset_commit(jn_kreader_t *r, int16_t version, jn_karena_t *a,
                                  jn_kafka_offset_commit_req_t *out) JN_MUST_CHECK;
int jn_kafka_decode_offset_fetch(jn_kreader_t *r, int16_t version, jn_karena_t *a,
                                 jn_kafka_offset_fetch_req_t *out) JN_MUST_CHECK;
int jn_kafka_decode_describe_groups(jn_kreader_t *r, int16_t version, jn_karena_t *a,
                                    jn_kafka_describe_groups_req_t *out) JN_MUST_CHECK;
int jn_kafka_decode_list_groups(jn_kreader_t *r, int16_t version, jn_karena_t *a,
                                jn_kafka_list_groups_req_t *out) JN_MUST_CHECK;
int jn_kafka_decode_create_topics(jn_kreader_t *r, int16_t version, jn_karena_t *a,
                                  jn_kafka_create_topics_req_t *out) JN_MUST_CHECK;
int jn_kafka_decode_delete_topics(jn_kreader_t *r, int16_t version, jn_karena_t *a,
                                  jn_kafka_delete_topics_req_t *out) JN_MUST_CHECK;
int jn_kafka_decode_create_partitions(jn_kreader_t *r, int16_t version, jn_karena_t *a,
                                      jn_kafka_create_partitions_req_t *out) JN_MUST_CHECK;
int jn_kafka_decode_describe_configs(jn_kreader_t *r, int16_t version, jn_karena_t *a,
                                     jn_kafka_describe_configs_req_t *out) JN_MUST_CHECK;
int jn_kafka_decode_init_producer_id(jn_kreader_t *r, int16_t version, jn_karena_t *a,
                                     jn_kafka_init_producer_id_req_t *out) JN_MUST_CHECK;
int jn_kafka_decode_sasl_handshake(jn_kreader_t *r, int16_t version, jn_karena_t *a,
                                   jn_kafka_sasl_handshake_req_t *out) JN_MUST_CHECK;
int jn_kafka_decode_sasl_authenticate(jn_kreader_t *r, int16_t version, jn_karena_t *a,
                                      jn_kafka_sasl_authenticate_req_t *out) JN_MUST_CHECK;

/* Decodes any supported request (header already parsed into |h|) from
 * |body|/|len| (after the header) into |out| (a union-sized buffer of at
 * least JN_KAFKA_REQ_MAX bytes). Used by the door's dispatcher and the
 * fuzz target. JN_EUNSUPPORTED for an unsupported key/version. */
#define JN_KAFKA_REQ_MAX 128
int jn_kafka_decode_request(const jn_kafka_header_t *h, const uint8_t *body, size_t len, jn_karena_t *a,
                            void *out) JN_MUST_CHECK;

#endif
