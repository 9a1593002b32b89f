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

#include "_rowchange.h"

static PyObject *MalformedTuple;

#define STACK_COLUMNS 64

/* A byte for an error message: itself when printable, else '?' (a NUL would cut the message short). */
#define SHOWN(c) ((c) >= 0x20 && (c) < 0x7f ? (c) : '?')

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
            PyErr_Format(MalformedTuple, "unknown tuple value kind '%c'", SHOWN(kind));
            return -1;
        }
    }
    return pos;
}

/* The TupleData at *pos as (values, unchanged list or NULL); *pos moves past it. NULL with an exception set. */
static PyObject *values_at(const unsigned char *buf, Py_ssize_t size, Py_ssize_t *pos, PyObject *positions,
                           PyObject *loaders, PyObject **unchanged) {
    PyObject *values = NULL;
    Slot stack[STACK_COLUMNS], *slots = stack;
    Py_ssize_t at = *pos;
    Py_ssize_t ncols = PyTuple_GET_SIZE(positions);
    *unchanged = NULL;
    if (PyTuple_GET_SIZE(loaders) != ncols) {
        PyErr_SetString(PyExc_ValueError, "positions and loaders differ in length");
        return NULL;
    }
    if (at < 0 || at + 2 > size) {
        PyErr_SetString(MalformedTuple, "tuple data truncated");
        return NULL;
    }
    int n = (int16_t)(((uint16_t)buf[at] << 8) | (uint16_t)buf[at + 1]);
    at += 2;
    if (n < 0) {
        PyErr_SetString(MalformedTuple, "negative column count");
        return NULL;
    }
    if (n > STACK_COLUMNS && (slots = PyMem_Malloc(sizeof(Slot) * (size_t)n)) == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    Py_ssize_t end = scan(buf, size, at, n, slots);
    if (end < 0)
        goto fail;
    values = PyTuple_New(ncols);
    if (values == NULL)
        goto fail;
    for (Py_ssize_t i = 0; i < ncols; i++) {
        Py_ssize_t col = PyLong_AsSsize_t(PyTuple_GET_ITEM(positions, i));
        if (col == -1 && PyErr_Occurred())
            goto fail;
        PyObject *v;
        if (col < 0 || col >= n || slots[col].start == -1) {
            v = Py_NewRef(Py_None);
        } else if (slots[col].start == -2) {
            if (*unchanged == NULL && (*unchanged = PyList_New(0)) == NULL)
                goto fail;
            PyObject *index = PyLong_FromSsize_t(i);
            if (index == NULL || PyList_Append(*unchanged, index) < 0) {
                Py_XDECREF(index);
                goto fail;
            }
            Py_DECREF(index);
            v = Py_NewRef(Py_None);
        } else {
            PyObject *raw = PyBytes_FromStringAndSize((const char *)buf + slots[col].start, slots[col].len);
            if (raw == NULL)
                goto fail;
            v = PyObject_CallOneArg(PyTuple_GET_ITEM(loaders, i), raw);
            Py_DECREF(raw);
            if (v == NULL)
                goto fail;
        }
        PyTuple_SET_ITEM(values, i, v);
    }
    if (slots != stack)
        PyMem_Free(slots);
    *pos = end;
    return values;
fail:
    Py_XDECREF(values);
    Py_CLEAR(*unchanged);
    if (slots != stack)
        PyMem_Free(slots);
    return NULL;
}

static PyObject *tuple_values(PyObject *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t pos;
    PyObject *positions, *loaders, *unchanged = NULL, *result = NULL;
    if (!PyArg_ParseTuple(args, "y*nO!O!", &view, &pos, &PyTuple_Type, &positions, &PyTuple_Type, &loaders))
        return NULL;
    PyObject *values = values_at(view.buf, view.len, &pos, positions, loaders, &unchanged);
    if (values != NULL) {
        PyObject *changed = unchanged == NULL ? Py_NewRef(Py_None) : PyList_AsTuple(unchanged);
        if (changed != NULL)
            result = Py_BuildValue("(NNn)", values, changed, pos);
        else
            Py_DECREF(values);
    }
    Py_XDECREF(unchanged);
    PyBuffer_Release(&view);
    return result;
}

static PyObject *row_change(PyObject *self, PyObject *args) {
    Py_buffer view;
    PyObject *positions, *loaders, *table, *ops, *nothing;
    PyTypeObject *cls;
    if (!PyArg_ParseTuple(args, "y*O!O!OO!O!O", &view, &PyTuple_Type, &positions, &PyTuple_Type, &loaders, &table,
                          &PyType_Type, &cls, &PyTuple_Type, &ops, &nothing))
        return NULL;
    const unsigned char *buf = view.buf;
    Py_ssize_t size = view.len, pos = 6;
    PyObject *before = NULL, *after = NULL, *unchanged = NULL, *ignored = NULL, *result = NULL, *frozen = NULL;
    if (PyTuple_GET_SIZE(ops) != 3) {
        PyErr_SetString(PyExc_ValueError, "ops must be (insert, update, delete)");
        goto done;
    }
    if (size < 6) {
        PyErr_SetString(MalformedTuple, "message truncated");
        goto done;
    }
    unsigned char kind = buf[0], marker = buf[5];
    PyObject *op;
    if (kind == 'I') {
        if (marker != 'N') {
            PyErr_Format(MalformedTuple, "insert: expected 'N', got '%c'", SHOWN(marker));
            goto done;
        }
        op = PyTuple_GET_ITEM(ops, 0);
    } else if (kind == 'U') {
        if (marker == 'K' || marker == 'O') {
            before = values_at(buf, size, &pos, positions, loaders, &ignored);
            if (before == NULL)
                goto done;
            if (pos >= size) {
                PyErr_SetString(MalformedTuple, "message truncated");
                goto done;
            }
            marker = buf[pos++];
        }
        if (marker != 'N') {
            PyErr_Format(MalformedTuple, "update: expected 'N', got '%c'", SHOWN(marker));
            goto done;
        }
        op = PyTuple_GET_ITEM(ops, 1);
    } else if (kind == 'D') {
        if (marker != 'K' && marker != 'O') {
            PyErr_Format(MalformedTuple, "delete: expected 'K' or 'O', got '%c'", SHOWN(marker));
            goto done;
        }
        before = values_at(buf, size, &pos, positions, loaders, &ignored);
        if (before == NULL)
            goto done;
        op = PyTuple_GET_ITEM(ops, 2);
    } else {
        PyErr_Format(MalformedTuple, "not a row change: '%c'", SHOWN(kind));
        goto done;
    }
    if (kind != 'D') {
        after = values_at(buf, size, &pos, positions, loaders, &unchanged);
        if (after == NULL)
            goto done;
    }
    if (unchanged != NULL) {
        if ((frozen = PyFrozenSet_New(unchanged)) == NULL)
            goto done;
    } else {
        frozen = Py_NewRef(nothing);
    }
    result = sluice_row_change(cls, op, table, before ? before : Py_None, after ? after : Py_None, frozen);
done:
    Py_XDECREF(before);
    Py_XDECREF(after);
    Py_XDECREF(unchanged);
    Py_XDECREF(ignored);
    Py_XDECREF(frozen);
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef methods[] = {
    {"tuple_values", tuple_values, METH_VARARGS,
     "tuple_values(buf, pos, positions, loaders) -> (values, unchanged or None, end): the pgoutput TupleData at pos "
     "as the table schema's values."},
    {"row_change", row_change, METH_VARARGS,
     "row_change(payload, positions, loaders, table, cls, ops, nothing) -> cls: an Insert, Update or Delete message "
     "(no xid field) as a row change."},
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
