/* log.h - the levelled logger. No fprintf in hot paths: use these. */
#ifndef JN_LOG_H
#define JN_LOG_H

enum jn_log_level { JN_LOG_DEBUG, JN_LOG_INFO, JN_LOG_WARN, JN_LOG_ERROR, JN_LOG_OFF };

/* Messages below |level| are discarded. Default JN_LOG_INFO. */
void jn_log_set_level(enum jn_log_level level);
enum jn_log_level jn_log_get_level(void);
/* Parses "debug" | "info" | "warn" | "error" | "off"; -1 when unknown. */
int jn_log_level_parse(const char *s);
/* Writes "2026-11-29T08:00:00.123Z LEVEL message\n" to stderr. */
void jn_log_write(enum jn_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define jn_log(level, ...) \
    do { if ((level) >= jn_log_get_level()) jn_log_write((level), __VA_ARGS__); } while (0)
#define jn_debug(...) jn_log(JN_LOG_DEBUG, __VA_ARGS__)
#define jn_info(...) jn_log(JN_LOG_INFO, __VA_ARGS__)
#define jn_warn(...) jn_log(JN_LOG_WARN, __VA_ARGS__)
#define jn_error(...) jn_log(JN_LOG_ERROR, __VA_ARGS__)

#endif
