/* Control messages: a small binary encoding for the structured values the client and the relay
 * exchange on their control stream (register a service, list services, answers with errors).
 *
 * A value is nil, false, true, an integer (int64), a double, a string (bytes), an array, or a
 * map with string keys. Each value starts with a tag byte; integers and lengths are big-endian:
 *
 *     tag        value       then
 *     0x00       nil
 *     0x01       false
 *     0x02       true
 *     0x03       double      8 bytes, IEEE 754 binary64 (never NaN)
 *     0x04-0x07  integer     1, 2, 4 or 8 bytes, two's complement
 *     0x08-0x0a  string      u8, u16 or u32 length, then the bytes
 *     0x0c-0x0e  array       u8, u16 or u32 count, then count values
 *     0x10-0x12  map         u8, u16 or u32 count, then count entries: u8 key length, key
 *                            bytes, value
 *     0x80-0xff  integer     0..127, the low 7 bits of the tag
 *
 * Every other tag is refused. The low two bits of tags 0x04-0x12 give the width: 1 << (tag & 3)
 * bytes. Every value has exactly one encoding: integers take the shortest form that holds them
 * (0..127 always as the tag itself) and lengths and counts the shortest width, anything longer
 * is refused. Map keys are not sorted and may repeat as far as this codec is concerned: a
 * consumer that builds a table refuses duplicates (the Lua binding does).
 *
 * On a byte stream each message is a u32 big-endian length followed by that many bytes holding
 * exactly one value. Limits, all checked before anything is allocated or a visitor is called:
 * the value is 1..WR_CTL_MAX_MESSAGE bytes, at most WR_CTL_MAX_DEPTH arrays and maps are nested,
 * and the counts of all open arrays and maps together never promise more elements than the
 * bytes left can hold (an element takes at least 1 byte, a map entry 2), so a consumer may
 * pre-size its containers from the counts. NaN is refused both ways: it has many encodings and
 * is never equal to itself, and no control message needs it. */
#ifndef WR_CTL_H
#define WR_CTL_H

#include <stddef.h>
#include <stdint.h>

#define WR_CTL_MAX_MESSAGE (1024 * 1024) /* bytes of one encoded value, prefix not included */
#define WR_CTL_MAX_DEPTH   16            /* arrays and maps nested in one another */
#define WR_CTL_MAX_KEY     255           /* bytes of a map key */
#define WR_CTL_PREFIX_LEN  4             /* the length before each message on a stream */

enum wr_ctl_tag {
    WR_CTL_NIL = 0x00,
    WR_CTL_FALSE = 0x01,
    WR_CTL_TRUE = 0x02,
    WR_CTL_DOUBLE = 0x03,
    WR_CTL_INT = 0x04,    /* + 0..3: 1, 2, 4, 8 bytes */
    WR_CTL_STRING = 0x08, /* + 0..2: u8, u16, u32 length */
    WR_CTL_ARRAY = 0x0c,  /* + 0..2: u8, u16, u32 count */
    WR_CTL_MAP = 0x10,    /* + 0..2: u8, u16, u32 count */
    WR_CTL_SMALL = 0x80,  /* | 0..127 */
};

enum wr_ctl_err {
    WR_CTL_OK = 0,
    WR_CTL_NEED_MORE = 1,  /* reader only: every byte given was consumed */
    WR_CTL_ETRUNC = -1,    /* the value ends before its last byte */
    WR_CTL_ETRAILING = -2, /* bytes after the value */
    WR_CTL_ETAG = -3,      /* unknown tag */
    WR_CTL_ELONGFORM = -4, /* an integer, length or count not in its shortest form */
    WR_CTL_ENAN = -5,      /* a double that is NaN */
    WR_CTL_EDEPTH = -6,    /* more than WR_CTL_MAX_DEPTH nested arrays and maps */
    WR_CTL_ECOUNT = -7,    /* counts promise more elements than the bytes left can hold */
    WR_CTL_ETOOBIG = -8,   /* over WR_CTL_MAX_MESSAGE */
    WR_CTL_EEMPTY = -9,    /* a zero length prefix: a message holds one value */
    WR_CTL_EABORT = -10,   /* a visitor returned non-zero */
    WR_CTL_EKEY = -11,     /* writer: key longer than WR_CTL_MAX_KEY */
    WR_CTL_EORDER = -12,   /* writer: call out of order (key expected, value complete...) */
    WR_CTL_ENOMEM = -13,
};
const char *wr_ctl_strerror(int err);

/* Callbacks of wr_ctl_decode, in document order. A map entry is key() then its value; every
 * array_begin and map_begin is closed by end() after its last element. Any callback may be NULL
 * (ignored); a non-zero return stops the walk with WR_CTL_EABORT. Strings and keys point into
 * the decoded buffer. n has already been checked against the bytes left. */
typedef struct wr_ctl_visitor {
    int (*nil)(void *ud);
    int (*boolean)(void *ud, int value);
    int (*integer)(void *ud, int64_t value);
    int (*number)(void *ud, double value);
    int (*string)(void *ud, const uint8_t *s, size_t len);
    int (*array_begin)(void *ud, uint32_t n);
    int (*map_begin)(void *ud, uint32_t n);
    int (*key)(void *ud, const uint8_t *s, size_t len);
    int (*end)(void *ud);
} wr_ctl_visitor;

/* Walks the one value in buf[0..len) (no length prefix). v may be NULL: check only. Returns
 * WR_CTL_OK or a negative code; *err (may be NULL) gets a short static text, NULL on success.
 * Callbacks already made are not undone. */
int wr_ctl_decode(const uint8_t *buf, size_t len, const wr_ctl_visitor *v, void *ud,
                  const char **err);

/* Encoder. Write one value: scalars with the put_* calls; an array with put_array(n) then n
 * values; a map with put_map(n) then n times put_key and a value. Containers close by count.
 * The first failure sticks: later calls return it and finish reports it, so a caller may check
 * only at the end. */
typedef struct wr_ctl_level {
    uint32_t left; /* elements still to write */
    uint8_t is_map;
    uint8_t want_key;
} wr_ctl_level;

typedef struct wr_ctl_writer {
    uint8_t *buf; /* WR_CTL_PREFIX_LEN bytes of room for the prefix, then the value */
    size_t len, cap;
    int err;
    int complete; /* the top-level value is written */
    int depth;
    wr_ctl_level stack[WR_CTL_MAX_DEPTH];
} wr_ctl_writer;

void wr_ctl_writer_init(wr_ctl_writer *w);
void wr_ctl_writer_free(wr_ctl_writer *w);
/* Starts a new message, keeping the buffer. */
void wr_ctl_writer_reset(wr_ctl_writer *w);
int wr_ctl_put_nil(wr_ctl_writer *w);
int wr_ctl_put_bool(wr_ctl_writer *w, int value);
int wr_ctl_put_int(wr_ctl_writer *w, int64_t value);
int wr_ctl_put_double(wr_ctl_writer *w, double value); /* NaN: WR_CTL_ENAN */
int wr_ctl_put_string(wr_ctl_writer *w, const void *s, size_t len);
int wr_ctl_put_array(wr_ctl_writer *w, uint32_t n);
int wr_ctl_put_map(wr_ctl_writer *w, uint32_t n);
int wr_ctl_put_key(wr_ctl_writer *w, const void *s, size_t len);
/* The framed message (length prefix + value), owned by the writer until reset or free. */
int wr_ctl_writer_finish(wr_ctl_writer *w, const uint8_t **msg, size_t *len);

/* Reassembles framed messages from a byte stream cut anywhere. Memory follows the bytes that
 * actually arrived (a prefix announcing 1 MiB allocates nothing until the bytes come), never
 * exceeds one message, and is given back after a large message. */
typedef struct wr_ctl_reader {
    uint8_t prefix[WR_CTL_PREFIX_LEN];
    size_t prefix_have;
    size_t want; /* value length, once the prefix is complete */
    uint8_t *buf;
    size_t have, cap;
    int delivered; /* buf holds a message handed out by the last call */
    int err;
} wr_ctl_reader;

void wr_ctl_reader_init(wr_ctl_reader *r);
void wr_ctl_reader_free(wr_ctl_reader *r);
/* Feed bytes as they arrive. On WR_CTL_OK, *msg and *msg_len are one encoded value (no prefix; it
 * points into data or the reader's buffer and is valid until the next call) and *consumed says
 * how much of data was used: call again with the rest. On WR_CTL_NEED_MORE all of data was
 * consumed. Negative (ETOOBIG, EEMPTY, ENOMEM): fatal, and returned again by later calls. */
int wr_ctl_reader_feed(wr_ctl_reader *r, const uint8_t *data, size_t len, size_t *consumed,
                       const uint8_t **msg, size_t *msg_len);

#endif
