/* addr.c - the one parser of "host:port" listen addresses, so that the
 * configuration check and every door that opens a listener from such a
 * string accept exactly the same spellings (and the ones jn_listener_open
 * can bind: IP literals and "localhost", no name lookups).
 */
#include "addr.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdbool.h>
#include <string.h>

#include "../common/error.h"

int jn_listen_parse(const char *s, char *host, size_t hostlen, int *port)
{
    const char *colon;
    const char *h;
    size_t hlen;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':')
            return JN_EINVAL;
        h = s + 1;
        hlen = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon || memchr(s, ':', (size_t)(colon - s)))
            return JN_EINVAL; /* an IPv6 literal needs brackets */
        h = s;
        hlen = (size_t)(colon - s);
    }
    if (hlen == 0 || hlen >= hostlen || hlen >= INET6_ADDRSTRLEN)
        return JN_EINVAL;
    const char *p = colon + 1;
    if (!*p || strlen(p) > 5)
        return JN_EINVAL;
    int v = 0;
    for (; *p; p++) {
        if (!isdigit((unsigned char)*p))
            return JN_EINVAL;
        v = v * 10 + (*p - '0');
    }
    if (v > 65535)
        return JN_EINVAL;
    char tmp[INET6_ADDRSTRLEN];
    memcpy(tmp, h, hlen);
    tmp[hlen] = '\0';
    unsigned char addr[sizeof(struct in6_addr)];
    bool ok = strcmp(tmp, "localhost") == 0 || (s[0] != '[' && inet_pton(AF_INET, tmp, addr) == 1) ||
              (s[0] == '[' && inet_pton(AF_INET6, tmp, addr) == 1);
    if (!ok)
        return JN_EINVAL;
    memcpy(host, tmp, hlen + 1);
    *port = v;
    return 0;
}
