/* cli.h - shared pieces of the `junction` command: argument parsing, the
 * REST client (libcurl easy interface) and the subcommands' entry points.
 *
 * Exit codes of every subcommand: 0 success, 1 the server (or the network)
 * said no, 2 bad usage. */
#ifndef JN_CLI_H
#define JN_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <curl/curl.h>

#include "common/buf.h"

#define CLI_EXIT_OK 0
#define CLI_EXIT_FAIL 1
#define CLI_EXIT_USAGE 2

#define CLI_RESPONSE_MAX (256u << 20) /* cap of a non-streaming response body */
#define CLI_MAX_POSITIONAL 8
#define CLI_MAX_OPTIONS 64

/* One accepted option: --name VALUE / --name=VALUE, or a bare --name when
 * |takes_value| is false. */
typedef struct cli_optspec {
    const char *name;
    bool takes_value;
} cli_optspec_t;

typedef struct cli_opt {
    const char *name;  /* the spec's name */
    const char *value; /* NULL for a bare flag */
} cli_opt_t;

typedef struct cli_args {
    const char *pos[CLI_MAX_POSITIONAL];
    int npos;
    cli_opt_t opts[CLI_MAX_OPTIONS];
    int nopts;
} cli_args_t;

/* The options every client command takes: --url, --token, --user,
 * --password. NULL-name terminated. */
extern const cli_optspec_t cli_client_opts[];

/* Parses argv[0..argc-1] against |specs| and |cli_client_opts| (both
 * NULL-name terminated). "--" ends the options; "-" is positional. On a
 * usage error prints "junction CMD: message" to stderr and returns
 * CLI_EXIT_USAGE, else 0. Values are views into argv. */
int cli_parse(const char *cmd, int argc, char **argv, const cli_optspec_t *specs, cli_args_t *out);
/* The last value of option |name|, or NULL. */
const char *cli_get(const cli_args_t *a, const char *name);
/* True when option |name| was given (bare or with a value). */
bool cli_has(const cli_args_t *a, const char *name);
/* Parses a non-negative decimal integer (at most |max|). Returns 0 or -1. */
int cli_parse_uint(const char *s, long long max, long long *out);
/* Prints "junction CMD: message" to stderr; returns CLI_EXIT_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

typedef struct cli_client {
    char url[1024];       /* base URL without a trailing '/' */
    const char *token;
    const char *user;
    const char *password;
    CURL *curl;
    struct curl_slist *headers; /* of the current request: the caller's plus auth */
} cli_client_t;

/* Sets up from --url (else $JUNCTION_URL, else http://127.0.0.1:8080),
 * --token (else $JUNCTION_TOKEN), --user and --password. Returns 0, or
 * prints the problem and returns CLI_EXIT_USAGE / CLI_EXIT_FAIL. */
int cli_client_init(cli_client_t *c, const char *cmd, const cli_args_t *a);
void cli_client_free(cli_client_t *c);

/* Appends |s| percent-encoded to |b|; '/' is kept when |keep_slash|. */
int cli_append_escaped(jn_buf_t *b, const char *s, bool keep_slash) JN_MUST_CHECK;

/* Prepares c->curl for |method| on base URL + |path| (which starts with
 * '/', query included) with auth, |headers| (borrowed, may be NULL) and
 * |body| (may be NULL for none). Resets any earlier options. Returns 0 or
 * CLI_EXIT_FAIL. The caller sets the write callback and performs. */
int cli_prepare(cli_client_t *c, const char *method, const char *path, struct curl_slist *headers,
                const void *body, size_t len);

/* A complete request: prepares, performs, collects the response body in
 * |resp| (capped) and the status in |*status|. Returns 0, or prints the
 * transport error and returns CLI_EXIT_FAIL. |resp| is initialised by the
 * caller (cap CLI_RESPONSE_MAX); a body over its cap fails the request. */
int cli_request(cli_client_t *c, const char *method, const char *path, struct curl_slist *headers,
                const void *body, size_t len, jn_buf_t *resp, long *status);

/* Prints the server's error ({"code","message"} or raw text) for |status|
 * to stderr and returns CLI_EXIT_FAIL. */
int cli_report_error(long status, const jn_buf_t *resp);

/* Subcommands: argv[0] is the subcommand's first argument. */
int cli_cmd_serve(int argc, char **argv);
int cli_cmd_pub(int argc, char **argv);
int cli_cmd_sub(int argc, char **argv);
int cli_cmd_streams(int argc, char **argv);

#endif
