/* listener.c - listening sockets of the connection layer, plain or TLS.
 *
 * A listener binds one address, owns the SSL_CTX made from its
 * certificate and key (shared by all its connections, which keep it
 * alive through OpenSSL's own reference count), and hands each accepted
 * socket to conn.c, which runs the owner's on_accept.
 */
#include "net_int.h"

#include <openssl/err.h>
#include <stdlib.h>
#include <string.h>

#include "../common/log.h"

static SSL_CTX *tls_ctx_new(const char *cert, const char *key)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx)
        return NULL;
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(ctx) != 1)
        goto fail;
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    /* Idle TLS connections give their record buffers back. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    return ctx;
fail:
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return NULL;
}

static void on_listener_closed(uv_handle_t *h)
{
    jn_listener_t *l = (jn_listener_t *)h;
    jn_net_t *net = l->net;
    SSL_CTX_free(l->ctx);
    free(l);
    jn__net_handle_closed(net);
}

static void on_connection(uv_stream_t *ls, int status)
{
    jn_listener_t *l = (jn_listener_t *)ls;
    if (status < 0) {
        jn_warn("%s: accept failed: %s", l->name, uv_strerror(status));
        return;
    }
    jn__conn_accept(l);
}

int jn_listener_open(jn_net_t *net, const char *name, const char *host, int port, const char *cert_file,
                     const char *key_file, jn_accept_cb on_accept, void *arg, jn_listener_t **out)
{
    struct sockaddr_storage ss;
    char h[64];
    SSL_CTX *ctx = NULL;
    jn_listener_t *l = NULL;
    if (!net || !host || !on_accept || port < 0 || port > 65535 || net->freeing)
        return JN_EINVAL;
    if (!name)
        name = "net";
    if (strcmp(host, "localhost") == 0)
        host = "127.0.0.1";
    size_t hl = strlen(host);
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
        if (hl - 2 >= sizeof h)
            return JN_EINVAL;
        memcpy(h, host + 1, hl - 2);
        h[hl - 2] = '\0';
        host = h;
    }
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) != 0 &&
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) != 0)
        return JN_EINVAL;
    if ((cert_file && *cert_file) || (key_file && *key_file)) {
        if (!cert_file || !key_file || !(ctx = tls_ctx_new(cert_file, key_file))) {
            jn_error("%s: cannot load TLS certificate %s / key %s", name, cert_file ? cert_file : "-",
                     key_file ? key_file : "-");
            return JN_EINVAL;
        }
    }
    if (!(l = calloc(1, sizeof *l))) {
        SSL_CTX_free(ctx);
        return JN_ENOMEM;
    }
    l->net = net;
    l->ctx = ctx;
    l->on_accept = on_accept;
    l->arg = arg;
    size_t nl = strlen(name);
    nl = nl < sizeof l->name - 1 ? nl : sizeof l->name - 1;
    memcpy(l->name, name, nl);
    l->name[nl] = '\0';
    jn_list_init(&l->link);
    if (uv_tcp_init(net->loop, &l->tcp) < 0) {
        SSL_CTX_free(ctx);
        free(l);
        return JN_EIO;
    }
    net->handles++;
    /* libuv sets SO_REUSEADDR on bind. */
    int rc = uv_tcp_bind(&l->tcp, (const struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&l->tcp, 4096, on_connection);
    if (rc < 0) {
        jn_error("%s: cannot listen on %s:%d: %s", name, host, port, uv_strerror(rc));
        l->closed = true;
        uv_close((uv_handle_t *)&l->tcp, on_listener_closed);
        return JN_EIO;
    }
    struct sockaddr_storage bound;
    int blen = sizeof bound;
    if (uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&bound, &blen) == 0)
        l->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                    : ((struct sockaddr_in *)&bound)->sin_port);
    jn_list_insert_tail(&net->listeners, &l->link);
    jn_info("%s: listening on %s:%d%s", name, host, l->port, ctx ? " (TLS)" : "");
    if (out)
        *out = l;
    return 0;
}

int jn_listener_port(const jn_listener_t *l)
{
    return l->port;
}

bool jn_listener_is_tls(const jn_listener_t *l)
{
    return l->ctx != NULL;
}

void jn_listener_close(jn_listener_t *l)
{
    if (!l || l->closed)
        return;
    l->closed = true;
    jn_list_remove(&l->link);
    uv_close((uv_handle_t *)&l->tcp, on_listener_closed);
}
