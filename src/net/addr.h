/* addr.h - "host:port" listen addresses as the configuration spells them. */
#ifndef JN_NET_ADDR_H
#define JN_NET_ADDR_H
#include <stddef.h>

#include "../common/error.h"

/* Splits "host:port" or "[v6]:port". |host| gets the host without
 * brackets. Accepts IPv4 and IPv6 literals and "localhost"; port 0-65535.
 * JN_EINVAL otherwise. */
int jn_listen_parse(const char *s, char *host, size_t hostlen, int *port) JN_MUST_CHECK;
#endif
