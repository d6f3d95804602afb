/* Leveled logging for the C core. The host routes records to the Lua logger; without a sink
 * (unit tests, fuzzers) they go to stderr. */
#ifndef WR_LOG_H
#define WR_LOG_H

enum wr_log_level { WR_LOG_ERROR, WR_LOG_WARN, WR_LOG_INFO, WR_LOG_DEBUG, WR_LOG_TRACE };

typedef void (*wr_log_sink)(enum wr_log_level level, const char *msg, void *ud);

void wr_log_set_sink(wr_log_sink sink, void *ud);
void wr_log_set_level(enum wr_log_level level);
int wr_log_enabled(enum wr_log_level level);
const char *wr_log_level_name(enum wr_log_level level);
void wr_log(enum wr_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define wr_error(...) wr_log(WR_LOG_ERROR, __VA_ARGS__)
#define wr_warn(...)  wr_log(WR_LOG_WARN, __VA_ARGS__)
#define wr_info(...)  wr_log(WR_LOG_INFO, __VA_ARGS__)
#define wr_debug(...)                                                                              \
    do {                                                                                           \
        if (wr_log_enabled(WR_LOG_DEBUG)) wr_log(WR_LOG_DEBUG, __VA_ARGS__);                       \
    } while (0)

#endif
