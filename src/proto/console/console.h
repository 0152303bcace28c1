/* console.h - the web console: the single-page app of web/ (index.html,
 * app.js, app.css...), embedded into the binary at build time
 * (scripts/embed.sh) and served from memory at "/" (docs/console.md).
 *
 * Every embedded asset named "web/<path>" is served at "/<path>", and
 * "web/index.html" also at "/". Responses carry the content type of the
 * file's extension, a strong ETag (a hash of the bytes, so it changes with
 * every build that changes the file), Cache-Control: no-cache (browsers
 * revalidate and get 304 while the ETag matches) and a Content-Security-
 * Policy that lets the page load nothing but this server's own files.
 */
#ifndef JN_CONSOLE_H
#define JN_CONSOLE_H

#include "../../http/server.h"

typedef struct jn_console jn_console_t;

/* Registers a GET route for every embedded "web/" asset on |httpd|.
 * A build without web assets registers nothing and still succeeds.
 * Returns the console (free with jn_console_free after the server has
 * stopped routing) or NULL on allocation failure or a route clash
 * (logged). */
jn_console_t *jn_console_new(jn_httpd_t *httpd);
void jn_console_free(jn_console_t *c);

/* The Content-Type served for file |name| (by its extension). */
const char *jn_console_content_type(const char *name);

#endif
