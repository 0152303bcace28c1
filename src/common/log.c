/* log.c - the levelled logger: one line per message on stderr, prefixed
 * with an ISO-8601 UTC timestamp (milliseconds) and the level name.
 *
 * The level is the one process-wide global of the project: logging is a
 * property of the process, not of a server instance, and the jn_log macro
 * must be able to test it without a context pointer.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static enum jn_log_level g_level = JN_LOG_INFO;

void jn_log_set_level(enum jn_log_level level)
{
    g_level = level;
}

enum jn_log_level jn_log_get_level(void)
{
    return g_level;
}

static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};
static const char *const level_tags[] = {"DEBUG", "INFO", "WARN", "ERROR", "OFF"};

int jn_log_level_parse(const char *s)
{
    if (!s)
        return -1;
    for (int i = 0; i <= JN_LOG_OFF; i++)
        if (strcmp(s, level_names[i]) == 0)
            return i;
    return -1;
}

void jn_log_write(enum jn_log_level level, const char *fmt, ...)
{
    /* The whole line is formatted first and written with one call so that
     * lines from different threads do not interleave. */
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
    const char *tag = (level >= JN_LOG_DEBUG && level <= JN_LOG_OFF) ? level_tags[level] : "?";
    int k = snprintf(line + n, sizeof line - n, ".%03dZ %s ", (int)(ts.tv_nsec / 1000000), tag);
    if (k > 0 && (size_t)k < sizeof line - n)
        n += (size_t)k;
    va_list ap;
    va_start(ap, fmt);
    k = vsnprintf(line + n, sizeof line - n, fmt, ap);
    va_end(ap);
    if (k > 0)
        n += ((size_t)k < sizeof line - n) ? (size_t)k : sizeof line - n - 1; /* truncated */
    if (n > sizeof line - 2)
        n = sizeof line - 2;
    line[n++] = '\n';
    fwrite(line, 1, n, stderr);
}
