/* error.h - the one error enum of the project.
 *
 * Every function that can fail returns an int: >= 0 on success (often a
 * count or an offset), or one of the negative codes below. Codes are grouped
 * by class so that a caller can test the class with the JN_ERR_CLASS macro
 * when the exact code does not matter.
 */
#ifndef JN_ERROR_H
#define JN_ERROR_H

enum jn_err {
    JN_OK = 0,

    /* -1..-9: would block / need more */
    JN_EAGAIN = -1,     /* output full or operation in progress; retry later */
    JN_EPARTIAL = -2,   /* input ends before a complete unit; feed more */

    /* -10..-19: protocol (bytes from a peer or a file are wrong) */
    JN_EPROTO = -10,    /* malformed input */
    JN_ECORRUPT = -11,  /* checksum or structure mismatch in stored data */
    JN_EUNSUPPORTED = -12, /* valid but not supported (e.g. compression) */

    /* -20..-29: argument (the caller asked for something invalid) */
    JN_EINVAL = -20,    /* invalid argument or name */
    JN_ENOENT = -21,    /* no such stream, key, group, user... */
    JN_EEXIST = -22,    /* already exists */
    JN_ERANGE = -23,    /* offset or index out of range */
    JN_ETOOBIG = -24,   /* exceeds a configured cap */
    JN_EAUTH = -25,     /* authentication failed */
    JN_EPERM = -26,     /* authenticated but not allowed */
    JN_ESTATE = -27,    /* not allowed in the current state */

    /* -30..-39: I/O */
    JN_EIO = -30,       /* read/write/fsync failed; errno logged */
    JN_ECLOSED = -31,   /* peer or object closed */

    /* -40..-49: memory */
    JN_ENOMEM = -40,
};

#define JN_ERR_CLASS(e) (((e) <= -10) ? ((-(e)) / 10) * -10 : (e))

/* Returns a static, human-readable description of |err|. Never NULL. */
const char *jn_strerror(int err);

/* Returns a stable lower-case identifier of |err| ("not_found",
 * "invalid_argument", ...) for use as the machine-readable `code` in JSON
 * error bodies. Never NULL. */
const char *jn_errcode(int err);

#if defined(__GNUC__)
#define JN_MUST_CHECK __attribute__((warn_unused_result))
#else
#define JN_MUST_CHECK
#endif

#endif
