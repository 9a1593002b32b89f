/*
 * sluice._speedups: the one loop of the worker that runs once per column of every inserted row.
 *
 * tuple_copy_line(buf, pos) turns the pgoutput TupleData at byte `pos` of `buf` (its int16 column count, then per
 * column a kind byte and, for text values, an int32 length and the text) into one line of PostgreSQL's text COPY
 * format: values separated by tabs, NULL as \N, backslash/tab/newline/carriage return escaped, a newline at the
 * end. It is byte-for-byte the same as sluice.worker.sinks.postgres.copytext.py_tuple_copy_line, which is the
 * reference (and the fallback where no C compiler was available at install time); the unit tests compare both.
 * Malformed input raises ValueError, never reads past the buffer.
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

static PyMethodDef methods[] = {
    {"tuple_copy_line", tuple_copy_line, METH_VARARGS,
     "tuple_copy_line(buf, pos) -> bytes: the pgoutput TupleData at pos as one text COPY line, newline included."},
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
