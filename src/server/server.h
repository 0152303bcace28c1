/* server.h - the server process: one loop, the broker, the HTTP server
 * and its doors, built from a jn_config_t and torn down on a signal.
 *
 * Start: loop, broker (data_dir, stream defaults, mappings), the admin
 * user if configured, the anonymous-access decision (config.h), the HTTP
 * server with its listeners, the REST door. SIGINT or SIGTERM starts a
 * graceful shutdown: the doors and the HTTP server close (listeners first,
 * live feeds ended), the loop runs until their handles are closed, then the
 * broker flushes and fsyncs every log and closes.
 */
#ifndef JN_SERVER_H
#define JN_SERVER_H

#include "../common/error.h"
#include "config.h"

#define JN_VERSION "0.1.0"

/* Runs the server described by |cfg| (borrowed for the whole run) until
 * SIGINT or SIGTERM. Sets the log level, ignores SIGPIPE. Returns 0 after
 * a clean shutdown, or a negative error when start-up failed (the reason
 * is logged): JN_EINVAL (config, as jn_config_validate), JN_EPERM (the
 * loopback rule), JN_EIO (data dir, bind, certificate), JN_ENOMEM,
 * or the broker's open error. */
int jn_server_run(const jn_config_t *cfg);

#endif
