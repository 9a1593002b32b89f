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

static PyMethodDef methods[] = {
    {"tuple_copy_line", tuple_copy_line, METH_VARARGS,
     "tuple_copy_line(buf, pos) -> bytes: the pgoutput TupleData at pos as one text COPY line, newline included."},
    {"mysql_copy_rows", mysql_copy_rows, METH_VARARGS,
     "mysql_copy_rows(buf, pos, seq, kinds, widths, fallbacks) -> (copy_text, pos, rows, seq, status): the MySQL "
     "text-protocol row packets from pos as COPY lines; status 0 = more data needed, 1 = the result's end, "
     "2 = a packet of 16 MiB or more at pos, 3 = an error packet at pos."},
    {"mysql_copy_row", mysql_copy_row, METH_VARARGS,
     "mysql_copy_row(payload, kinds, widths, fallbacks) -> bytes: one row packet's payload as one COPY line."},
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
