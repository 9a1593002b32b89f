/*
 * One RowChange built from C, shared by sluice._pgrows (pgoutput messages) and sluice._speedups (MySQL binlog rows
 * events): each extension includes it and gets its own static copy (they are separate modules with no C API
 * between them).
 *
 * sluice_row_change(cls, op, table, before, after, unchanged) is cls.__new__(cls) with its fields set as a frozen
 * dataclass's __init__ sets them (object.__setattr__), without the Python-level __init__ call per row, which was
 * a large part of what the per-row loops cost.
 */
#ifndef SLUICE_ROWCHANGE_H
#define SLUICE_ROWCHANGE_H

#include <Python.h>

static PyObject *sluice_rc_names[5]; /* op, table, before, after, unchanged: interned on first use */

static PyObject *sluice_row_change(PyTypeObject *cls, PyObject *op, PyObject *table, PyObject *before,
                                   PyObject *after, PyObject *unchanged) {
    static const char *const names[5] = {"op", "table", "before", "after", "unchanged"};
    if (sluice_rc_names[4] == NULL) {
        for (int i = 0; i < 5; i++) {
            if (sluice_rc_names[i] == NULL && (sluice_rc_names[i] = PyUnicode_InternFromString(names[i])) == NULL)
                return NULL;
        }
    }
    if (cls->tp_new == NULL) {
        PyErr_Format(PyExc_TypeError, "cannot create '%s' instances", cls->tp_name);
        return NULL;
    }
    PyObject *empty = PyTuple_New(0);
    if (empty == NULL)
        return NULL;
    PyObject *obj = cls->tp_new(cls, empty, NULL);
    Py_DECREF(empty);
    if (obj == NULL)
        return NULL;
    PyObject *values[5] = {op, table, before, after, unchanged};
    for (int i = 0; i < 5; i++) {
        if (PyObject_GenericSetAttr(obj, sluice_rc_names[i], values[i]) < 0) {
            Py_DECREF(obj);
            return NULL;
        }
    }
    return obj;
}

#endif
