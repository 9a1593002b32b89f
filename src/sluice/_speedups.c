/*
 * sluice._speedups: the one loop of the worker that runs once per column of every inserted row.
 *
 * tuple_copy_line(buf, pos) turns the pgoutput TupleData at byte `pos` of `buf` (its int16 column count, then per
 * column a kind byte and, for text values, an int32 length and the text) into one line of PostgreSQL's text COPY
 * format: values separated by tabs, NULL as \N, backslash/tab/newline/carriage return escaped, a newline at the
 * end. It is byte-for-byte the same as sluice.worker.sinks.postgres.copytext.py_tuple_copy_line, which is the
 * reference (and the fallback where no C compiler was available at install time); the unit tests compare both.
 * Malformed input raises ValueError, never reads past the buffer.
 *
 * mysql_copy_rows(buf, pos, seq, kinds, widths, fallbacks) turns the MySQL text-protocol result-set row packets at
 * byte `pos` of `buf` (raw bytes from the server's socket: 3-byte length, sequence byte, then per column a
 * length-encoded string or 0xFB for NULL) into lines of PostgreSQL's text COPY format, one converter per column
 * (`kinds`, see MYSQL_KIND_* below). It is the same as sluice.worker.sources.mysql.copytext.py_mysql_copy_rows,
 * the reference and fallback; the unit tests compare both.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "_rowchange.h"

static int32_t read_i32(const unsigned char *p) {
    return (int32_t)(((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3]);
}

/* Walks the tuple once; returns the COPY line's length, or -1 with ValueError set. */
static Py_ssize_t line_length(const unsigned char *buf, Py_ssize_t size, Py_ssize_t pos, int ncols) {
    Py_ssize_t out = ncols > 0 ? ncols : 1; /* ncols-1 tabs and the newline (an empty tuple is just "\n") */
    for (int i = 0; i < ncols; i++) {
        if (pos >= size) {
            PyErr_SetString(PyExc_ValueError, "tuple data truncated");
            return -1;
        }
        unsigned char kind = buf[pos];
        if (kind == 'n') {
            out += 2;
            pos += 1;
        } else if (kind == 't') {
            if (pos + 5 > size) {
                PyErr_SetString(PyExc_ValueError, "tuple data truncated");
                return -1;
            }
            int32_t len = read_i32(buf + pos + 1);
            pos += 5;
            if (len < 0 || (Py_ssize_t)len > size - pos) {
                PyErr_SetString(PyExc_ValueError, "tuple value truncated");
                return -1;
            }
            out += len;
            for (const unsigned char *p = buf + pos, *end = buf + pos + len; p < end; p++) {
                unsigned char c = *p;
                if (c == '\\' || c == '\t' || c == '\n' || c == '\r')
                    out++;
            }
            pos += len;
        } else {
            PyErr_Format(PyExc_ValueError, "tuple value kind '%c' cannot become a COPY line", kind);
            return -1;
        }
    }
    return out;
}

static PyObject *tuple_copy_line(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer view;
    Py_ssize_t pos;
    if (!PyArg_ParseTuple(args, "y*n", &view, &pos))
        return NULL;
    const unsigned char *buf = (const unsigned char *)view.buf;
    Py_ssize_t size = view.len;
    PyObject *result = NULL;
    if (pos < 0 || pos + 2 > size) {
        PyErr_SetString(PyExc_ValueError, "tuple data truncated");
        goto done;
    }
    int ncols = (int16_t)(((uint16_t)buf[pos] << 8) | (uint16_t)buf[pos + 1]);
    if (ncols < 0) {
        PyErr_SetString(PyExc_ValueError, "negative column count");
        goto done;
    }
    pos += 2;
    Py_ssize_t total = line_length(buf, size, pos, ncols);
    if (total < 0)
        goto done;
    result = PyBytes_FromStringAndSize(NULL, total);
    if (result == NULL)
        goto done;
    char *out = PyBytes_AS_STRING(result);
    for (int i = 0; i < ncols; i++) {
        if (i > 0)
            *out++ = '\t';
        if (buf[pos] == 'n') {
            *out++ = '\\';
            *out++ = 'N';
            pos += 1;
            continue;
        }
        int32_t len = read_i32(buf + pos + 1);
        pos += 5;
        const unsigned char *p = buf + pos, *end = buf + pos + len;
        pos += len;
        while (p < end) {
            /* copy the longest stretch that needs no escape in one go */
            const unsigned char *q = p;
            while (q < end && *q != '\\' && *q != '\t' && *q != '\n' && *q != '\r')
                q++;
            memcpy(out, p, (size_t)(q - p));
            out += q - p;
            if (q == end)
                break;
            *out++ = '\\';
            switch (*q) {
            case '\\': *out++ = '\\'; break;
            case '\t': *out++ = 't'; break;
            case '\n': *out++ = 'n'; break;
            default: *out++ = 'r'; break;
            }
            p = q + 1;
        }
    }
    *out = '\n';
done:
    PyBuffer_Release(&view);
    return result;
}

/* ------------------------------------------------------------------------------------------ MySQL rows -> COPY */

/* Column converters of mysql_copy_rows (one byte each in `kinds`). A value that the fast form cannot take as it is
 * (a zero date, TIME outside 0..24h, anything not in the server's canonical spelling) goes to the column's Python
 * fallback, which converts it exactly as the neutral path does. */
#define MYSQL_KIND_PLAIN 'p'    /* the text as it is, COPY-escaped */
#define MYSQL_KIND_SKIP '-'     /* not copied (the sink lacks the column) */
#define MYSQL_KIND_INTBOOL 'b'  /* TINYINT(1) as boolean: "0" -> f, other integers -> t */
#define MYSQL_KIND_BITBOOL 'B'  /* BIT(1) as boolean: any non-zero byte -> t */
#define MYSQL_KIND_HEX 'x'      /* bytes -> bytea hex */
#define MYSQL_KIND_HEX_LPAD 'L' /* bytes left-padded with zero bytes to widths[i] (BIT(n)) -> bytea hex */
#define MYSQL_KIND_HEX_RPAD 'R' /* bytes right-padded with zero bytes to widths[i] (BINARY(n)) -> bytea hex */
#define MYSQL_KIND_DATE 'd'     /* valid YYYY-MM-DD as it is */
#define MYSQL_KIND_DATETIME 't' /* valid YYYY-MM-DD HH:MM:SS[.f..] as it is */
#define MYSQL_KIND_UTC 'z'      /* the same, with "+00" appended (TIMESTAMP read in a UTC session) */
#define MYSQL_KIND_TIME 'T'     /* HH:MM:SS[.f..] below 24 hours as it is */
#define MYSQL_KIND_FALLBACK 'f' /* always the Python fallback */

#define MYSQL_MAX_PACKET 0xffffff

enum { ROWS_NEED_MORE = 0, ROWS_END = 1, ROWS_BIG_PACKET = 2, ROWS_ERROR_PACKET = 3 };

typedef struct {
    char *data;
    Py_ssize_t len, cap;
} outbuf;

static int out_reserve(outbuf *o, Py_ssize_t extra) {
    if (o->len + extra <= o->cap)
        return 0;
    Py_ssize_t cap = o->cap ? o->cap : 65536;
    while (cap < o->len + extra)
        cap *= 2;
    char *p = PyMem_Realloc(o->data, (size_t)cap);
    if (p == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    o->data = p;
    o->cap = cap;
    return 0;
}

static int out_escaped(outbuf *o, const unsigned char *p, Py_ssize_t n) {
    if (out_reserve(o, 2 * n) < 0)
        return -1;
    char *out = o->data + o->len;
    const unsigned char *end = p + n;
    while (p < end) {
        const unsigned char *q = p;
        while (q < end && *q != '\\' && *q != '\t' && *q != '\n' && *q != '\r')
            q++;
        memcpy(out, p, (size_t)(q - p));
        out += q - p;
        if (q == end)
            break;
        *out++ = '\\';
        switch (*q) {
        case '\\': *out++ = '\\'; break;
        case '\t': *out++ = 't'; break;
        case '\n': *out++ = 'n'; break;
        default: *out++ = 'r'; break;
        }
        p = q + 1;
    }
    o->len = out - o->data;
    return 0;
}

static int out_hex(outbuf *o, const unsigned char *p, Py_ssize_t n, Py_ssize_t lpad, Py_ssize_t rpad) {
    static const char digits[] = "0123456789abcdef";
    if (out_reserve(o, 3 + 2 * (n + lpad + rpad)) < 0)
        return -1;
    char *out = o->data + o->len;
    *out++ = '\\';
    *out++ = '\\';
    *out++ = 'x';
    for (Py_ssize_t i = 0; i < lpad; i++) {
        *out++ = '0';
        *out++ = '0';
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        *out++ = digits[p[i] >> 4];
        *out++ = digits[p[i] & 15];
    }
    for (Py_ssize_t i = 0; i < rpad; i++) {
        *out++ = '0';
        *out++ = '0';
    }
    o->len = out - o->data;
    return 0;
}

static int digits_at(const unsigned char *p, int n, int *value) {
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return 0;
        v = v * 10 + (p[i] - '0');
    }
    *value = v;
    return 1;
}

static int valid_date(const unsigned char *p) {
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y, m, d;
    if (!digits_at(p, 4, &y) || p[4] != '-' || !digits_at(p + 5, 2, &m) || p[7] != '-' || !digits_at(p + 8, 2, &d))
        return 0;
    if (y < 1 || m < 1 || m > 12 || d < 1)
        return 0;
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return d <= days[m - 1] + (m == 2 && leap);
}

/* HH:MM:SS with HH below `max_hour`, then nothing or '.' and 1 to 6 digits */
static int valid_clock(const unsigned char *p, Py_ssize_t n, int max_hour) {
    int h, m, s, f;
    if (n < 8 || !digits_at(p, 2, &h) || p[2] != ':' || !digits_at(p + 3, 2, &m) || p[5] != ':' ||
        !digits_at(p + 6, 2, &s))
        return 0;
    if (h >= max_hour || m > 59 || s > 59)
        return 0;
    if (n == 8)
        return 1;
    return n >= 10 && n <= 15 && p[8] == '.' && digits_at(p + 9, (int)(n - 9), &f);
}

static int valid_datetime(const unsigned char *p, Py_ssize_t n) {
    return n >= 19 && valid_date(p) && p[10] == ' ' && valid_clock(p + 11, n - 11, 24);
}

typedef struct {
    int ncols;
    const char *kinds;
    Py_ssize_t *widths;
    PyObject *fallbacks; /* tuple */
} row_spec;

static int read_lenenc(const unsigned char *p, const unsigned char *end, const unsigned char **value, Py_ssize_t *n) {
    if (p >= end)
        return -1;
    unsigned char c = *p;
    uint64_t len;
    int skip;
    if (c < 0xfb) {
        len = c;
        skip = 1;
    } else if (c == 0xfb) {
        *value = NULL;
        *n = 1;
        return 0;
    } else if (c == 0xfc) {
        if (end - p < 3)
            return -1;
        len = (uint64_t)p[1] | ((uint64_t)p[2] << 8);
        skip = 3;
    } else if (c == 0xfd) {
        if (end - p < 4)
            return -1;
        len = (uint64_t)p[1] | ((uint64_t)p[2] << 8) | ((uint64_t)p[3] << 16);
        skip = 4;
    } else if (c == 0xfe) {
        if (end - p < 9)
            return -1;
        len = 0;
        for (int i = 8; i >= 1; i--)
            len = (len << 8) | p[i];
        skip = 9;
    } else {
        return -1;
    }
    if (len > (uint64_t)(end - p - skip))
        return -1;
    *value = p + skip;
    *n = skip + (Py_ssize_t)len;
    return 0;
}

static int call_fallback(outbuf *o, const row_spec *spec, int col, const unsigned char *v, Py_ssize_t n) {
    PyObject *fn = PyTuple_GET_ITEM(spec->fallbacks, col);
    if (fn == Py_None) {
        PyErr_Format(PyExc_ValueError, "column %d needs a fallback converter and has none", col);
        return -1;
    }
    PyObject *arg = PyBytes_FromStringAndSize((const char *)v, n);
    if (arg == NULL)
        return -1;
    PyObject *res = PyObject_CallOneArg(fn, arg);
    Py_DECREF(arg);
    if (res == NULL)
        return -1;
    int rc;
    if (res == Py_None) {
        rc = out_reserve(o, 2);
        if (rc == 0) {
            o->data[o->len++] = '\\';
            o->data[o->len++] = 'N';
        }
    } else if (PyBytes_Check(res)) {
        rc = out_escaped(o, (const unsigned char *)PyBytes_AS_STRING(res), PyBytes_GET_SIZE(res));
    } else {
        PyErr_SetString(PyExc_TypeError, "a fallback converter must return bytes or None");
        rc = -1;
    }
    Py_DECREF(res);
    return rc;
}

/* One row's payload as one COPY line (newline included). */
static int row_to_copy(outbuf *o, const row_spec *spec, const unsigned char *p, const unsigned char *end) {
    int first = 1;
    for (int i = 0; i < spec->ncols; i++) {
        const unsigned char *v;
        Py_ssize_t used;
        if (read_lenenc(p, end, &v, &used) < 0) {
            PyErr_SetString(PyExc_ValueError, "row packet truncated or malformed");
            return -1;
        }
        Py_ssize_t n = v == NULL ? 0 : used - (v - p);
        p += used;
        char kind = spec->kinds[i];
        if (kind == MYSQL_KIND_SKIP)
            continue;
        if (out_reserve(o, 8) < 0)
            return -1;
        if (!first)
            o->data[o->len++] = '\t';
        first = 0;
        if (v == NULL) {
            o->data[o->len++] = '\\';
            o->data[o->len++] = 'N';
            continue;
        }
        int rc = 0;
        switch (kind) {
        case MYSQL_KIND_PLAIN:
            rc = out_escaped(o, v, n);
            break;
        case MYSQL_KIND_INTBOOL: {
            int nonzero = 0;
            for (Py_ssize_t k = 0; k < n; k++)
                if (v[k] >= '1' && v[k] <= '9')
                    nonzero = 1;
            o->data[o->len++] = nonzero ? 't' : 'f';
            break;
        }
        case MYSQL_KIND_BITBOOL: {
            int nonzero = 0;
            for (Py_ssize_t k = 0; k < n; k++)
                if (v[k])
                    nonzero = 1;
            o->data[o->len++] = nonzero ? 't' : 'f';
            break;
        }
        case MYSQL_KIND_HEX:
            rc = out_hex(o, v, n, 0, 0);
            break;
        case MYSQL_KIND_HEX_LPAD:
            rc = out_hex(o, v, n, spec->widths[i] > n ? spec->widths[i] - n : 0, 0);
            break;
        case MYSQL_KIND_HEX_RPAD:
            rc = out_hex(o, v, n, 0, spec->widths[i] > n ? spec->widths[i] - n : 0);
            break;
        case MYSQL_KIND_DATE:
            rc = n == 10 && valid_date(v) ? out_escaped(o, v, n) : call_fallback(o, spec, i, v, n);
            break;
        case MYSQL_KIND_DATETIME:
            rc = valid_datetime(v, n) ? out_escaped(o, v, n) : call_fallback(o, spec, i, v, n);
            break;
        case MYSQL_KIND_UTC:
            if (valid_datetime(v, n)) {
                rc = out_escaped(o, v, n);
                if (rc == 0 && (rc = out_reserve(o, 3)) == 0) {
                    memcpy(o->data + o->len, "+00", 3);
                    o->len += 3;
                }
            } else {
                rc = call_fallback(o, spec, i, v, n);
            }
            break;
        case MYSQL_KIND_TIME:
            rc = valid_clock(v, n, 24) ? out_escaped(o, v, n) : call_fallback(o, spec, i, v, n);
            break;
        case MYSQL_KIND_FALLBACK:
            rc = call_fallback(o, spec, i, v, n);
            break;
        default:
            PyErr_Format(PyExc_ValueError, "unknown column kind '%c'", kind);
            rc = -1;
        }
        if (rc < 0)
            return -1;
    }
    if (p != end) {
        PyErr_SetString(PyExc_ValueError, "row packet has more columns than the result");
        return -1;
    }
    if (out_reserve(o, 1) < 0)
        return -1;
    o->data[o->len++] = '\n';
    return 0;
}

static int parse_spec(row_spec *spec, PyObject *kinds, PyObject *widths, PyObject *fallbacks) {
    Py_ssize_t ncols = PyBytes_GET_SIZE(kinds);
    if (PyTuple_GET_SIZE(widths) != ncols || PyTuple_GET_SIZE(fallbacks) != ncols) {
        PyErr_SetString(PyExc_ValueError, "kinds, widths and fallbacks differ in length");
        return -1;
    }
    spec->ncols = (int)ncols;
    spec->kinds = PyBytes_AS_STRING(kinds);
    spec->fallbacks = fallbacks;
    spec->widths = PyMem_Malloc(sizeof(Py_ssize_t) * (size_t)(ncols ? ncols : 1));
    if (spec->widths == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < ncols; i++) {
        spec->widths[i] = PyLong_AsSsize_t(PyTuple_GET_ITEM(widths, i));
        if (spec->widths[i] == -1 && PyErr_Occurred()) {
            PyMem_Free(spec->widths);
            return -1;
        }
    }
    return 0;
}

static PyObject *mysql_copy_rows(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer view;
    Py_ssize_t pos;
    int seq;
    PyObject *kinds, *widths, *fallbacks;
    if (!PyArg_ParseTuple(args, "y*niO!O!O!", &view, &pos, &seq, &PyBytes_Type, &kinds, &PyTuple_Type, &widths,
                          &PyTuple_Type, &fallbacks))
        return NULL;
    row_spec spec;
    PyObject *result = NULL;
    outbuf o = {NULL, 0, 0};
    if (parse_spec(&spec, kinds, widths, fallbacks) < 0) {
        PyBuffer_Release(&view);
        return NULL;
    }
    const unsigned char *buf = (const unsigned char *)view.buf;
    Py_ssize_t size = view.len, rows = 0;
    int status = ROWS_NEED_MORE;
    if (pos < 0 || pos > size) {
        PyErr_SetString(PyExc_ValueError, "position outside the buffer");
        goto done;
    }
    while (size - pos >= 4) {
        Py_ssize_t len = (Py_ssize_t)buf[pos] | ((Py_ssize_t)buf[pos + 1] << 8) | ((Py_ssize_t)buf[pos + 2] << 16);
        if (buf[pos + 3] != (unsigned char)seq) {
            PyErr_Format(PyExc_ValueError, "packet sequence number wrong - got %d expected %d", buf[pos + 3], seq);
            goto done;
        }
        if (len == MYSQL_MAX_PACKET) {
            status = ROWS_BIG_PACKET;
            break;
        }
        if (size - pos - 4 < len)
            break;
        const unsigned char *payload = buf + pos + 4;
        if (len > 0 && payload[0] == 0xff) {
            status = ROWS_ERROR_PACKET;
            break;
        }
        if (len > 0 && len < 9 && payload[0] == 0xfe) {
            pos += 4 + len;
            seq = (seq + 1) & 0xff;
            status = ROWS_END;
            break;
        }
        if (row_to_copy(&o, &spec, payload, payload + len) < 0)
            goto done;
        rows++;
        pos += 4 + len;
        seq = (seq + 1) & 0xff;
    }
    {
        PyObject *out = PyBytes_FromStringAndSize(o.data ? o.data : "", o.len);
        if (out != NULL)
            result = Py_BuildValue("(Nnnii)", out, pos, rows, seq, status);
    }
done:
    PyMem_Free(o.data);
    PyMem_Free(spec.widths);
    PyBuffer_Release(&view);
    return result;
}

static PyObject *mysql_copy_row(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer view;
    PyObject *kinds, *widths, *fallbacks;
    if (!PyArg_ParseTuple(args, "y*O!O!O!", &view, &PyBytes_Type, &kinds, &PyTuple_Type, &widths, &PyTuple_Type,
                          &fallbacks))
        return NULL;
    row_spec spec;
    PyObject *result = NULL;
    outbuf o = {NULL, 0, 0};
    if (parse_spec(&spec, kinds, widths, fallbacks) < 0) {
        PyBuffer_Release(&view);
        return NULL;
    }
    const unsigned char *p = (const unsigned char *)view.buf;
    if (row_to_copy(&o, &spec, p, p + view.len) == 0)
        result = PyBytes_FromStringAndSize(o.data, o.len);
    PyMem_Free(o.data);
    PyMem_Free(spec.widths);
    PyBuffer_Release(&view);
    return result;
}

/* ================================================================================================================
 * MySQL binlog rows events: mysql_rows_decode(buf, pos, end, bitmaps, specs)
 *
 * Decodes the rows body buf[pos:end] of a WRITE/UPDATE/DELETE_ROWS event (v1/v2; what follows the present-columns
 * bitmaps) into a list of tuples, one per row image, len(bitmaps) images a row (the present-columns bitmap of each;
 * a column absent from it is None). One decoder per column (`specs`: (code, m1, m2, extra) tuples, see RD_* below,
 * chosen by sluice.worker.sources.mysql.rowdecode.column_specs). The values are mysql-replication's, value for
 * value; sluice.worker.sources.mysql.rowdecode.py_decode_rows is the reference and fallback, and the tests compare
 * the two and the library on real events. Truncated input raises ValueError, never reads past `end`.
 * With `loaders` (one callable or None per column), each value is passed through its column's loader, where the
 * column has one, before it goes into the row (the stream's per-column loaders, skipped where they would return
 * the value as it is). With `change` = (cls, op, table, unchanged, slot), each row comes back as a `cls` (the frozen
 * RowChange dataclass, its fields set as its __init__ would) with its image as after (slot 0: inserts), before
 * (slot 1: deletes), or before and after (slot 2: updates, two images).
 * ================================================================================================================ */
#include <datetime.h>

enum {
    RD_TINY = 1, RD_SHORT = 2, RD_INT24 = 3, RD_LONG = 4, RD_LONGLONG = 5, /* m1 = unsigned */
    RD_FLOAT = 6, RD_DOUBLE = 7,
    RD_DECIMAL = 8,                                                 /* m1 = precision, m2 = scale */
    RD_STRING = 9, /* m1 = length bytes, extra = encoding or None (bytes; '' for an empty value if m2) */
    RD_DATE = 10, RD_DATETIME2 = 11, RD_TIMESTAMP2 = 12, RD_TIME2 = 13, /* m1 = fsp */
    RD_YEAR = 14,
    RD_ENUM = 15, RD_SET = 16,                                      /* m1 = bytes, extra = members or None */
    RD_BIT = 17,                                                    /* m1 = bits, m2 = bytes */
    RD_JSON = 18,                                                   /* m1 = length bytes, extra = parser */
};

typedef struct {
    int code, m1, m2;
    int utf8;             /* RD_STRING: decode as UTF-8 inline */
    const char *encoding; /* RD_STRING: any other codec (NULL with utf8 == 0: bytes) */
    PyObject *extra;      /* borrowed from the specs tuple */
} rd_col;

static PyObject *rd_decimal = NULL; /* decimal.Decimal */
static const int rd_compressed[10] = {0, 1, 1, 2, 2, 3, 3, 4, 4, 4};
static const int64_t rd_pow10[7] = {1, 10, 100, 1000, 10000, 100000, 1000000};

static PyObject *rd_truncated(void) {
    PyErr_SetString(PyExc_ValueError, "rows event truncated");
    return NULL;
}

static uint64_t rd_le(const unsigned char *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static int64_t rd_be_signed(const unsigned char *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    int shift = 64 - 8 * n;
    return n ? (int64_t)(v << shift) >> shift : 0;
}

/* the library's __read_fsp: microseconds from `fsp` digits stored in (fsp+1)/2 big-endian signed bytes */
static int64_t rd_fsp(const unsigned char *p, int fsp) {
    int n = (fsp + 1) / 2;
    if (n == 0)
        return 0;
    int64_t v = rd_be_signed(p, n);
    if (fsp % 2)
        v = v / 10;
    return v * rd_pow10[6 - fsp];
}

static int rd_days_in_month(int y, int m) {
    static const int days[13] = {0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return 29;
    return days[m];
}

static PyObject *rd_usec_error(void) {
    PyErr_SetString(PyExc_ValueError, "microsecond must be in 0..999999");
    return NULL;
}

static PyObject *rd_decimal_value(const unsigned char *p, int precision, int scale) {
    int integral = precision - scale;
    int ui = integral / 9, ci = integral % 9, uf = scale / 9, cf = scale % 9;
    int size = rd_compressed[ci] + 4 * ui + 4 * uf + rd_compressed[cf];
    unsigned char d[40];
    char text[512];
    int len = 0;
    memcpy(d, p, (size_t)size);
    int64_t mask = 0;
    if (!(d[0] & 0x80)) {
        mask = -1;
        text[len++] = '-';
    }
    d[0] ^= 0x80;
    int at = 0, n = rd_compressed[ci];
    if (n) {
        len += snprintf(text + len, sizeof text - (size_t)len, "%lld", (long long)(rd_be_signed(d, n) ^ mask));
        at += n;
    }
    for (int i = 0; i < ui; i++, at += 4)
        len += snprintf(text + len, sizeof text - (size_t)len, "%09lld", (long long)(rd_be_signed(d + at, 4) ^ mask));
    text[len++] = '.';
    for (int i = 0; i < uf; i++, at += 4)
        len += snprintf(text + len, sizeof text - (size_t)len, "%09lld", (long long)(rd_be_signed(d + at, 4) ^ mask));
    n = rd_compressed[cf];
    if (n)
        len += snprintf(text + len, sizeof text - (size_t)len, "%0*lld", cf, (long long)(rd_be_signed(d + at, n) ^ mask));
    if (len >= (int)sizeof text) {
        PyErr_SetString(PyExc_ValueError, "decimal too long");
        return NULL;
    }
    PyObject *s = PyUnicode_FromStringAndSize(text, len);
    if (s == NULL)
        return NULL;
    PyObject *value = PyObject_CallOneArg(rd_decimal, s);
    Py_DECREF(s);
    return value;
}

static int rd_decimal_size(int precision, int scale) {
    int integral = precision - scale;
    return rd_compressed[integral % 9] + 4 * (integral / 9) + 4 * (scale / 9) + rd_compressed[scale % 9];
}

/* One value at *pp (advanced past it); a new reference, or NULL with an exception set. */
static PyObject *rd_value(const rd_col *c, const unsigned char **pp, const unsigned char *end) {
    const unsigned char *p = *pp;
    Py_ssize_t avail = end - p;
#define RD_NEED(k)                                                                                                     \
    do {                                                                                                               \
        if (avail < (Py_ssize_t)(k))                                                                                   \
            return rd_truncated();                                                                                     \
    } while (0)
    switch (c->code) {
    case RD_TINY:
        RD_NEED(1);
        *pp = p + 1;
        return c->m1 ? PyLong_FromLong(p[0]) : PyLong_FromLong((int8_t)p[0]);
    case RD_SHORT: {
        RD_NEED(2);
        *pp = p + 2;
        uint16_t v = (uint16_t)rd_le(p, 2);
        return c->m1 ? PyLong_FromLong(v) : PyLong_FromLong((int16_t)v);
    }
    case RD_INT24: {
        RD_NEED(3);
        *pp = p + 3;
        long v = (long)rd_le(p, 3);
        if (!c->m1 && v >= 0x800000)
            v -= 0x1000000;
        return PyLong_FromLong(v);
    }
    case RD_LONG: {
        RD_NEED(4);
        *pp = p + 4;
        uint32_t v = (uint32_t)rd_le(p, 4);
        return c->m1 ? PyLong_FromUnsignedLong(v) : PyLong_FromLong((int32_t)v);
    }
    case RD_LONGLONG: {
        RD_NEED(8);
        *pp = p + 8;
        uint64_t v = rd_le(p, 8);
        return c->m1 ? PyLong_FromUnsignedLongLong(v) : PyLong_FromLongLong((int64_t)v);
    }
    case RD_FLOAT: {
        RD_NEED(4);
        *pp = p + 4;
        uint32_t bits = (uint32_t)rd_le(p, 4);
        float f;
        memcpy(&f, &bits, 4);
        return PyFloat_FromDouble((double)f);
    }
    case RD_DOUBLE: {
        RD_NEED(8);
        *pp = p + 8;
        uint64_t bits = rd_le(p, 8);
        double d;
        memcpy(&d, &bits, 8);
        return PyFloat_FromDouble(d);
    }
    case RD_DECIMAL: {
        int size = rd_decimal_size(c->m1, c->m2);
        RD_NEED(size);
        *pp = p + size;
        return rd_decimal_value(p, c->m1, c->m2);
    }
    case RD_STRING: {
        RD_NEED(c->m1);
        uint64_t n = rd_le(p, c->m1);
        if ((uint64_t)(avail - c->m1) < n)
            return rd_truncated();
        const char *s = (const char *)p + c->m1;
        *pp = p + c->m1 + n;
        if (c->utf8)
            return PyUnicode_DecodeUTF8(s, (Py_ssize_t)n, "strict");
        if (c->encoding != NULL)
            return PyUnicode_Decode(s, (Py_ssize_t)n, c->encoding, "strict");
        if (n == 0 && c->m2) /* the library's bytes.decode(a codec Python lacks) of b"": '' */
            return PyUnicode_New(0, 0);
        return PyBytes_FromStringAndSize(s, (Py_ssize_t)n);
    }
    case RD_DATE: {
        RD_NEED(3);
        *pp = p + 3;
        uint32_t t = (uint32_t)rd_le(p, 3);
        int y = (int)((t >> 9) & 0x7fff), m = (int)((t >> 5) & 0xf), d = (int)(t & 0x1f);
        if (t == 0 || y == 0 || m == 0 || d == 0)
            Py_RETURN_NONE;
        return PyDate_FromDate(y, m, d); /* an impossible date raises ValueError, as the library does */
    }
    case RD_DATETIME2: {
        int nf = (c->m1 + 1) / 2;
        RD_NEED(5 + nf);
        *pp = p + 5 + nf;
        uint64_t v = 0;
        for (int i = 0; i < 5; i++)
            v = (v << 8) | p[i];
        int ym = (int)((v >> 22) & 0x1ffff);
        int y = ym / 13, mo = ym % 13, d = (int)((v >> 17) & 0x1f), h = (int)((v >> 12) & 0x1f);
        int mi = (int)((v >> 6) & 0x3f), s = (int)(v & 0x3f);
        if (y < 1 || y > 9999 || mo < 1 || d < 1 || d > rd_days_in_month(y, mo) || h > 23 || mi > 59 || s > 59)
            Py_RETURN_NONE; /* the library's ValueError -> None (zero dates) */
        int64_t us = rd_fsp(p + 5, c->m1);
        if (us > 999999)
            return rd_usec_error();
        return PyDateTime_FromDateAndTime(y, mo, d, h, mi, s, us > 0 ? (int)us : 0);
    }
    case RD_TIMESTAMP2: {
        int nf = (c->m1 + 1) / 2;
        RD_NEED(4 + nf);
        *pp = p + 4 + nf;
        int64_t secs = rd_be_signed(p, 4);
        int64_t days = secs / 86400, rem = secs % 86400;
        if (rem < 0) {
            rem += 86400;
            days--;
        }
        /* civil date of a day count from 1970-01-01 (H. Hinnant's algorithm) */
        int64_t z = days + 719468;
        int64_t era = (z >= 0 ? z : z - 146096) / 146097;
        int64_t doe = z - era * 146097;
        int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
        int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        int64_t mp = (5 * doy + 2) / 153;
        int d = (int)(doy - (153 * mp + 2) / 5 + 1);
        int mo = (int)(mp < 10 ? mp + 3 : mp - 9);
        int y = (int)(yoe + era * 400 + (mo <= 2));
        int64_t us = rd_fsp(p + 4, c->m1);
        if (us > 999999)
            return rd_usec_error();
        return PyDateTime_FromDateAndTime(y, mo, d, (int)(rem / 3600), (int)(rem % 3600 / 60), (int)(rem % 60),
                                          us > 0 ? (int)us : 0);
    }
    case RD_TIME2: {
        /* as the server reads it (my_time_packed_from_binary): integer part and fraction are one signed number */
        int nf = (c->m1 + 1) / 2;
        RD_NEED(3 + nf);
        *pp = p + 3 + nf;
        int64_t packed;
        if (c->m1 >= 5) {
            packed = (int64_t)(((uint64_t)p[0] << 40) | ((uint64_t)p[1] << 32) | ((uint64_t)p[2] << 24) |
                               ((uint64_t)p[3] << 16) | ((uint64_t)p[4] << 8) | (uint64_t)p[5]) -
                     0x800000000000LL;
        } else {
            int64_t intpart = (int64_t)(((uint32_t)p[0] << 16) | ((uint32_t)p[1] << 8) | (uint32_t)p[2]) - 0x800000;
            int64_t frac = 0;
            if (c->m1 >= 3) {
                frac = ((int64_t)p[3] << 8) | (int64_t)p[4];
                if (intpart < 0 && frac) {
                    intpart++;
                    frac -= 0x10000;
                }
                frac *= 100;
            } else if (c->m1 >= 1) {
                frac = p[3];
                if (intpart < 0 && frac) {
                    intpart++;
                    frac -= 0x100;
                }
                frac *= 10000;
            }
            packed = intpart * (1LL << 24) + frac;
        }
        int negative = packed < 0;
        if (negative)
            packed = -packed;
        int64_t hms = packed >> 24, us = packed & 0xffffff;
        int64_t h = (hms >> 12) & 0x3ff, mi = (hms >> 6) & 0x3f, s = hms & 0x3f;
        int64_t total = ((h * 3600 + mi * 60 + s) * 1000000 + us) * (negative ? -1 : 1);
        int64_t day_us = 86400LL * 1000000;
        int64_t days = total / day_us, r = total % day_us;
        if (r < 0) {
            r += day_us;
            days--;
        }
        return PyDelta_FromDSU((int)days, (int)(r / 1000000), (int)(r % 1000000));
    }
    case RD_YEAR:
        RD_NEED(1);
        *pp = p + 1;
        return PyLong_FromLong(p[0] + 1900);
    case RD_ENUM: {
        RD_NEED(c->m1);
        *pp = p + c->m1;
        uint64_t idx = rd_le(p, c->m1);
        if (c->extra == Py_None)
            Py_RETURN_NONE;
        if (idx >= (uint64_t)PyTuple_GET_SIZE(c->extra)) {
            PyErr_SetString(PyExc_IndexError, "enum index out of range");
            return NULL;
        }
        PyObject *v = PyTuple_GET_ITEM(c->extra, (Py_ssize_t)idx);
        Py_INCREF(v);
        return v;
    }
    case RD_SET: {
        RD_NEED(c->m1);
        *pp = p + c->m1;
        uint64_t mask = rd_le(p, c->m1);
        if (c->extra == Py_None)
            Py_RETURN_NONE;
        /* an empty set is a value (''), not NULL: NULL is in the row's null bitmap */
        PyObject *set = PySet_New(NULL);
        if (set == NULL)
            return NULL;
        Py_ssize_t n = PyTuple_GET_SIZE(c->extra);
        for (Py_ssize_t i = 0; i < n && i < 64; i++) {
            if ((mask >> i) & 1) {
                if (PySet_Add(set, PyTuple_GET_ITEM(c->extra, i)) < 0) {
                    Py_DECREF(set);
                    return NULL;
                }
            }
        }
        return set;
    }
    case RD_BIT: {
        int nbytes = c->m2;
        RD_NEED(nbytes);
        *pp = p + nbytes;
        if (nbytes == 0)
            return PyUnicode_FromStringAndSize("", 0);
        int first = nbytes == 1 ? c->m1 : (c->m1 % 8 ? c->m1 % 8 : 8);
        if (first > 8)
            first = 8;
        Py_ssize_t len = first + 8 * (Py_ssize_t)(nbytes - 1);
        PyObject *s = PyUnicode_New(len, 127);
        if (s == NULL)
            return NULL;
        char *out = (char *)PyUnicode_1BYTE_DATA(s);
        Py_ssize_t k = 0;
        for (int i = 0; i < nbytes; i++) {
            int width = i ? 8 : first;
            for (int b = width - 1; b >= 0; b--)
                out[k++] = (p[i] >> b) & 1 ? '1' : '0';
        }
        return s;
    }
    case RD_JSON: {
        RD_NEED(c->m1);
        uint64_t n = rd_le(p, c->m1);
        if (n == 0) {
            *pp = p + c->m1;
            Py_RETURN_NONE;
        }
        if ((uint64_t)(avail - c->m1) < n)
            return rd_truncated();
        *pp = p + c->m1 + n;
        PyObject *raw = PyBytes_FromStringAndSize((const char *)p + c->m1, (Py_ssize_t)n);
        if (raw == NULL)
            return NULL;
        PyObject *v = PyObject_CallOneArg(c->extra, raw);
        Py_DECREF(raw);
        return v;
    }
    default:
        PyErr_Format(PyExc_ValueError, "unknown column decoder %d", c->code);
        return NULL;
    }
#undef RD_NEED
}

static rd_col *rd_parse_specs(PyObject *specs, Py_ssize_t *ncols) {
    Py_ssize_t n = PyTuple_GET_SIZE(specs);
    rd_col *cols = PyMem_Calloc((size_t)(n ? n : 1), sizeof(rd_col));
    if (cols == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *s = PyTuple_GET_ITEM(specs, i);
        rd_col *c = &cols[i];
        if (!PyTuple_Check(s) || PyTuple_GET_SIZE(s) != 4) {
            PyErr_SetString(PyExc_TypeError, "a column spec is a (code, m1, m2, extra) tuple");
            goto fail;
        }
        c->code = (int)PyLong_AsLong(PyTuple_GET_ITEM(s, 0));
        c->m1 = (int)PyLong_AsLong(PyTuple_GET_ITEM(s, 1));
        c->m2 = (int)PyLong_AsLong(PyTuple_GET_ITEM(s, 2));
        c->extra = PyTuple_GET_ITEM(s, 3);
        if (PyErr_Occurred())
            goto fail;
        int ok = 1;
        switch (c->code) {
        case RD_STRING:
        case RD_JSON:
            ok = c->m1 >= 1 && c->m1 <= 4;
            if (c->code == RD_JSON)
                ok = ok && PyCallable_Check(c->extra);
            else if (c->extra != Py_None) {
                if (!PyUnicode_Check(c->extra))
                    ok = 0;
                else {
                    c->encoding = PyUnicode_AsUTF8(c->extra);
                    if (c->encoding == NULL)
                        goto fail;
                    c->utf8 = strcmp(c->encoding, "utf-8") == 0;
                }
            }
            break;
        case RD_ENUM:
        case RD_SET:
            ok = c->m1 >= 1 && c->m1 <= 8 && (c->extra == Py_None || PyTuple_Check(c->extra));
            break;
        case RD_DATETIME2:
        case RD_TIMESTAMP2:
        case RD_TIME2:
            ok = c->m1 >= 0 && c->m1 <= 6;
            break;
        case RD_DECIMAL:
            ok = c->m2 >= 0 && c->m2 <= c->m1 && c->m1 <= 65;
            break;
        case RD_BIT:
            ok = c->m2 >= 0 && c->m2 <= 8 && c->m1 >= 0 && c->m1 <= 64;
            break;
        default:
            ok = c->code >= RD_TINY && c->code <= RD_JSON;
        }
        if (!ok) {
            PyErr_Format(PyExc_ValueError, "column %zd: bad decoder spec", i);
            goto fail;
        }
    }
    *ncols = n;
    return cols;
fail:
    PyMem_Free(cols);
    return NULL;
}

static PyObject *mysql_rows_decode(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer view;
    Py_ssize_t pos, end;
    PyObject *bitmaps, *specs, *loaders = Py_None, *change = Py_None;
    if (!PyArg_ParseTuple(args, "y*nnO!O!|OO", &view, &pos, &end, &PyTuple_Type, &bitmaps, &PyTuple_Type, &specs,
                          &loaders, &change))
        return NULL;
    PyObject *prev = NULL; /* with `change`, an UPDATE's before image waiting for its after image */
    PyObject *rows = NULL;
    rd_col *cols = NULL;
    unsigned char *present = NULL;
    Py_ssize_t ncols = 0, nimages = PyTuple_GET_SIZE(bitmaps);
    if (PyDateTimeAPI == NULL) {
        PyDateTime_IMPORT;
        if (PyDateTimeAPI == NULL)
            goto done;
    }
    if (rd_decimal == NULL) {
        PyObject *mod = PyImport_ImportModule("decimal");
        if (mod == NULL)
            goto done;
        rd_decimal = PyObject_GetAttrString(mod, "Decimal");
        Py_DECREF(mod);
        if (rd_decimal == NULL)
            goto done;
    }
    if (pos < 0 || end < pos || end > view.len || nimages < 1 || nimages > 2) {
        PyErr_SetString(PyExc_ValueError, "bad rows event bounds or images");
        goto done;
    }
    if ((cols = rd_parse_specs(specs, &ncols)) == NULL)
        goto done;
    if (loaders != Py_None && (!PyTuple_Check(loaders) || PyTuple_GET_SIZE(loaders) != ncols)) {
        PyErr_SetString(PyExc_ValueError, "loaders must be None or one callable (or None) per column");
        goto done;
    }
    /* change = (cls, op, table, unchanged, slot): each row as cls with its image(s) as after (slot 0), before
     * (slot 1), or before and after (slot 2, two images) */
    PyTypeObject *ch_cls = NULL;
    PyObject *ch_op = NULL, *ch_table = NULL, *ch_unchanged = NULL;
    long ch_slot = 0;
    if (change != Py_None) {
        if (!PyTuple_Check(change) || PyTuple_GET_SIZE(change) != 5 || !PyType_Check(PyTuple_GET_ITEM(change, 0))) {
            PyErr_SetString(PyExc_ValueError, "change must be None or (cls, op, table, unchanged, slot)");
            goto done;
        }
        ch_cls = (PyTypeObject *)PyTuple_GET_ITEM(change, 0);
        ch_op = PyTuple_GET_ITEM(change, 1);
        ch_table = PyTuple_GET_ITEM(change, 2);
        ch_unchanged = PyTuple_GET_ITEM(change, 3);
        ch_slot = PyLong_AsLong(PyTuple_GET_ITEM(change, 4));
        if (PyErr_Occurred())
            goto done;
        if (ch_slot < 0 || ch_slot > 2 || (ch_slot == 2) != (nimages == 2)) {
            PyErr_SetString(PyExc_ValueError, "change slot 2 (before and after) goes with two images, 0/1 with one");
            goto done;
        }
    }
    /* present[image * ncols + i]: column i is in that image; counts[image]: how many are */
    present = PyMem_Malloc((size_t)(nimages * (ncols ? ncols : 1)));
    if (present == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t counts[2] = {0, 0};
    for (Py_ssize_t im = 0; im < nimages; im++) {
        PyObject *bm = PyTuple_GET_ITEM(bitmaps, im);
        if (!PyBytes_Check(bm) || PyBytes_GET_SIZE(bm) < (ncols + 7) / 8) {
            PyErr_SetString(PyExc_ValueError, "a present-columns bitmap is too short");
            goto done;
        }
        const unsigned char *b = (const unsigned char *)PyBytes_AS_STRING(bm);
        for (Py_ssize_t i = 0; i < ncols; i++) {
            present[im * ncols + i] = (b[i >> 3] >> (i & 7)) & 1;
            counts[im] += present[im * ncols + i];
        }
    }
    if ((rows = PyList_New(0)) == NULL)
        goto done;
    if (counts[0] + counts[1] == 0 && end > pos) { /* rows of no bytes: the library would loop for ever */
        PyErr_SetString(PyExc_ValueError, "rows event without columns");
        goto fail;
    }
    const unsigned char *base = (const unsigned char *)view.buf;
    const unsigned char *p = base + pos, *stop = base + end;
    while (p < stop) {
        for (Py_ssize_t im = 0; im < nimages; im++) {
            Py_ssize_t nbytes = (counts[im] + 7) / 8;
            if (stop - p < nbytes) {
                rd_truncated();
                goto fail;
            }
            const unsigned char *nulls = p;
            p += nbytes;
            PyObject *row = PyTuple_New(ncols);
            if (row == NULL)
                goto fail;
            Py_ssize_t k = 0;
            for (Py_ssize_t i = 0; i < ncols; i++) {
                PyObject *v;
                if (!present[im * ncols + i]) {
                    v = Py_None;
                    Py_INCREF(v);
                } else {
                    if ((nulls[k >> 3] >> (k & 7)) & 1) {
                        v = Py_None;
                        Py_INCREF(v);
                    } else if ((v = rd_value(&cols[i], &p, stop)) == NULL) {
                        Py_DECREF(row);
                        goto fail;
                    }
                    k++;
                }
                if (loaders != Py_None) {
                    PyObject *load = PyTuple_GET_ITEM(loaders, i);
                    if (load != Py_None) {
                        PyObject *loaded = PyObject_CallOneArg(load, v);
                        Py_DECREF(v);
                        if (loaded == NULL) {
                            Py_DECREF(row);
                            goto fail;
                        }
                        v = loaded;
                    }
                }
                PyTuple_SET_ITEM(row, i, v);
            }
            if (ch_cls != NULL) {
                if (ch_slot == 2 && im == 0) {
                    prev = row;
                    continue;
                }
                PyObject *made;
                if (ch_slot == 0)
                    made = sluice_row_change(ch_cls, ch_op, ch_table, Py_None, row, ch_unchanged);
                else if (ch_slot == 1)
                    made = sluice_row_change(ch_cls, ch_op, ch_table, row, Py_None, ch_unchanged);
                else
                    made = sluice_row_change(ch_cls, ch_op, ch_table, prev, row, ch_unchanged);
                Py_CLEAR(prev);
                Py_DECREF(row);
                if (made == NULL)
                    goto fail;
                row = made;
            }
            int rc = PyList_Append(rows, row);
            Py_DECREF(row);
            if (rc < 0)
                goto fail;
        }
    }
    goto done;
fail:
    Py_CLEAR(rows);
done:
    Py_XDECREF(prev);
    PyMem_Free(present);
    PyMem_Free(cols);
    PyBuffer_Release(&view);
    return rows;
}

static PyMethodDef methods[] = {
    {"tuple_copy_line", tuple_copy_line, METH_VARARGS,
     "tuple_copy_line(buf, pos) -> bytes: the pgoutput TupleData at pos as one text COPY line, newline included."},
    {"mysql_copy_rows", mysql_copy_rows, METH_VARARGS,
     "mysql_copy_rows(buf, pos, seq, kinds, widths, fallbacks) -> (copy_text, pos, rows, seq, status): the MySQL "
     "text-protocol row packets from pos as COPY lines; status 0 = more data needed, 1 = the result's end, "
     "2 = a packet of 16 MiB or more at pos, 3 = an error packet at pos."},
    {"mysql_copy_row", mysql_copy_row, METH_VARARGS,
     "mysql_copy_row(payload, kinds, widths, fallbacks) -> bytes: one row packet's payload as one COPY line."},
    {"mysql_rows_decode", mysql_rows_decode, METH_VARARGS,
     "mysql_rows_decode(buf, pos, end, bitmaps, specs, loaders=None, change=None) -> list of tuples: the row images "
     "of a binlog rows event body buf[pos:end], values as mysql-replication decodes them (then through each "
     "column's loader); with change=(cls, op, table, unchanged, slot), one cls(op, table, before, after, unchanged) "
     "per row instead."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "sluice._speedups",
    .m_doc = "Compiled hot loops of the replication worker.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__speedups(void) { return PyModule_Create(&module); }
