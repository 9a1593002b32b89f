/*
 * sluice._pgrows: pgoutput row tuples -> Python values, for the general flow's PostgreSQL source.
 *
 * tuple_values(buf, pos, positions, loaders) reads the pgoutput TupleData at byte `pos` of `buf` (its int16 column
 * count, then per column a kind byte and, for text or binary values, an int32 length and the bytes) and returns
 * (values, unchanged, end):
 *   - values: a tuple in the table schema's column order; schema column i is tuple column positions[i] (-1: the
 *     relation does not send it), loaded with loaders[i](bytes); NULL, absent and unchanged-TOAST values are None;
 *   - unchanged: a tuple of the schema indexes whose value the server did not send (unchanged TOAST), or None;
 *   - end: the byte after the tuple.
 * It is the same as sluice.worker.sources.postgres.decode.py_tuple_values, the reference (and the fallback where
 * the extension was not built); the unit tests compare both. Once per column of every streamed row, it was most of
 * the source's cost in Python. The tuple is checked whole before any loader runs: malformed input raises
 * MalformedTuple (a ValueError) and never reads past the buffer; a loader's own error propagates unchanged.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

static PyObject *MalformedTuple;

#define STACK_COLUMNS 64

typedef struct {
    Py_ssize_t start; /* offset of the value's bytes; -1 NULL, -2 unchanged TOAST */
    Py_ssize_t len;
} Slot;

static int32_t read_i32(const unsigned char *p) {
    return (int32_t)(((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3]);
}

/* Fills slots[0..n) from the tuple's columns; returns the end offset, or -1 with MalformedTuple set. */
static Py_ssize_t scan(const unsigned char *buf, Py_ssize_t size, Py_ssize_t pos, int n, Slot *slots) {
    for (int i = 0; i < n; i++) {
        if (pos >= size) {
            PyErr_SetString(MalformedTuple, "tuple data truncated");
            return -1;
        }
        unsigned char kind = buf[pos++];
        if (kind == 't' || kind == 'b') {
            if (pos + 4 > size) {
                PyErr_SetString(MalformedTuple, "tuple data truncated");
                return -1;
            }
            int32_t len = read_i32(buf + pos);
            pos += 4;
            if (len < 0 || (Py_ssize_t)len > size - pos) {
                PyErr_SetString(MalformedTuple, "tuple value truncated");
                return -1;
            }
            slots[i].start = pos;
            slots[i].len = len;
            pos += len;
        } else if (kind == 'n') {
            slots[i].start = -1;
        } else if (kind == 'u') {
            slots[i].start = -2;
        } else {
            PyErr_Format(MalformedTuple, "unknown tuple value kind '%c'", kind);
            return -1;
        }
    }
    return pos;
}

static PyObject *tuple_values(PyObject *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t pos;
    PyObject *positions, *loaders;
    if (!PyArg_ParseTuple(args, "y*nO!O!", &view, &pos, &PyTuple_Type, &positions, &PyTuple_Type, &loaders))
        return NULL;
    PyObject *result = NULL, *values = NULL, *unchanged = NULL;
    Slot stack[STACK_COLUMNS], *slots = stack;
    const unsigned char *buf = (const unsigned char *)view.buf;
    Py_ssize_t size = view.len;
    Py_ssize_t ncols = PyTuple_GET_SIZE(positions);
    if (PyTuple_GET_SIZE(loaders) != ncols) {
        PyErr_SetString(PyExc_ValueError, "positions and loaders differ in length");
        goto done;
    }
    if (pos < 0 || pos + 2 > size) {
        PyErr_SetString(MalformedTuple, "tuple data truncated");
        goto done;
    }
    int n = (int16_t)(((uint16_t)buf[pos] << 8) | (uint16_t)buf[pos + 1]);
    pos += 2;
    if (n < 0) {
        PyErr_SetString(MalformedTuple, "negative column count");
        goto done;
    }
    if (n > STACK_COLUMNS) {
        slots = PyMem_Malloc(sizeof(Slot) * (size_t)n);
        if (slots == NULL) {
            PyErr_NoMemory();
            goto done;
        }
    }
    Py_ssize_t end = scan(buf, size, pos, n, slots);
    if (end < 0)
        goto done;
    values = PyTuple_New(ncols);
    if (values == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < ncols; i++) {
        Py_ssize_t at = PyLong_AsSsize_t(PyTuple_GET_ITEM(positions, i));
        if (at == -1 && PyErr_Occurred())
            goto done;
        PyObject *v;
        if (at < 0 || at >= n || slots[at].start == -1) {
            v = Py_NewRef(Py_None);
        } else if (slots[at].start == -2) {
            v = Py_NewRef(Py_None);
            if (unchanged == NULL && (unchanged = PyList_New(0)) == NULL) {
                Py_DECREF(v);
                goto done;
            }
            PyObject *index = PyLong_FromSsize_t(i);
            if (index == NULL || PyList_Append(unchanged, index) < 0) {
                Py_XDECREF(index);
                Py_DECREF(v);
                goto done;
            }
            Py_DECREF(index);
        } else {
            PyObject *raw = PyBytes_FromStringAndSize((const char *)buf + slots[at].start, slots[at].len);
            if (raw == NULL)
                goto done;
            v = PyObject_CallOneArg(PyTuple_GET_ITEM(loaders, i), raw);
            Py_DECREF(raw);
            if (v == NULL)
                goto done;
        }
        PyTuple_SET_ITEM(values, i, v);
    }
    PyObject *changed = unchanged == NULL ? Py_NewRef(Py_None) : PyList_AsTuple(unchanged);
    if (changed == NULL)
        goto done;
    result = Py_BuildValue("(ONn)", values, changed, end);
done:
    Py_XDECREF(values);
    Py_XDECREF(unchanged);
    if (slots != stack)
        PyMem_Free(slots);
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef methods[] = {
    {"tuple_values", tuple_values, METH_VARARGS,
     "tuple_values(buf, pos, positions, loaders) -> (values, unchanged or None, end): the pgoutput TupleData at pos "
     "as the table schema's values."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "sluice._pgrows",
    .m_doc = "pgoutput row tuples as Python values (compiled).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__pgrows(void) {
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    MalformedTuple = PyErr_NewException("sluice._pgrows.MalformedTuple", PyExc_ValueError, NULL);
    if (MalformedTuple == NULL || PyModule_AddObjectRef(m, "MalformedTuple", MalformedTuple) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
