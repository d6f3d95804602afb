#include "wr_log.h"

#include <stdarg.h>
#include <stdio.h>

static wr_log_sink log_sink;
static void *log_sink_ud;
static enum wr_log_level log_level = WR_LOG_INFO;

static const char *const level_names[] = {"error", "warn", "info", "debug", "trace"};

void wr_log_set_sink(wr_log_sink sink, void *ud)
{
    log_sink = sink;
    log_sink_ud = ud;
}

void wr_log_set_level(enum wr_log_level level)
{
    log_level = level;
}

int wr_log_enabled(enum wr_log_level level)
{
    return level <= log_level;
}

const char *wr_log_level_name(enum wr_log_level level)
{
    return level <= WR_LOG_TRACE ? level_names[level] : "?";
}

void wr_log(enum wr_log_level level, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    if (!wr_log_enabled(level)) return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (log_sink)
        log_sink(level, msg, log_sink_ud);
    else
        fprintf(stderr, "warren %s: %s\n", wr_log_level_name(level), msg);
}
