/* error.c - names and descriptions of the project's error codes.
 *
 * jn_errcode() strings are part of the public API (the `code` field of JSON
 * error bodies): once published they must never change.
 */
#include "error.h"

const char *jn_strerror(int err)
{
    switch (err) {
    case JN_OK: return "success";
    case JN_EAGAIN: return "operation would block; retry later";
    case JN_EPARTIAL: return "input ends before a complete unit";
    case JN_EPROTO: return "malformed input";
    case JN_ECORRUPT: return "checksum or structure mismatch in stored data";
    case JN_EUNSUPPORTED: return "valid but not supported";
    case JN_EINVAL: return "invalid argument";
    case JN_ENOENT: return "not found";
    case JN_EEXIST: return "already exists";
    case JN_ERANGE: return "out of range";
    case JN_ETOOBIG: return "exceeds a configured limit";
    case JN_EAUTH: return "authentication failed";
    case JN_EPERM: return "not allowed";
    case JN_ESTATE: return "not allowed in the current state";
    case JN_EIO: return "I/O error";
    case JN_ECLOSED: return "closed";
    case JN_ENOMEM: return "out of memory";
    default: return "unknown error";
    }
}

const char *jn_errcode(int err)
{
    switch (err) {
    case JN_OK: return "ok";
    case JN_EAGAIN: return "would_block";
    case JN_EPARTIAL: return "partial";
    case JN_EPROTO: return "protocol_error";
    case JN_ECORRUPT: return "corrupt";
    case JN_EUNSUPPORTED: return "unsupported";
    case JN_EINVAL: return "invalid_argument";
    case JN_ENOENT: return "not_found";
    case JN_EEXIST: return "already_exists";
    case JN_ERANGE: return "out_of_range";
    case JN_ETOOBIG: return "too_large";
    case JN_EAUTH: return "unauthorized";
    case JN_EPERM: return "forbidden";
    case JN_ESTATE: return "bad_state";
    case JN_EIO: return "io_error";
    case JN_ECLOSED: return "closed";
    case JN_ENOMEM: return "out_of_memory";
    default: return "unknown";
    }
}
