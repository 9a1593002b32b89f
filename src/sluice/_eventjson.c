/*
 * sluice._eventjson: one native change event as JSON bytes, for tables whose values are JSON already.
 *
 * native_event(head, names, key, values) returns
 *     head + ',"key":{' + the key columns + '},"row":{' + every column + '}}'
 * (the key part only when `key` is not empty), where `head` is the event's shared start ('{"op":"u",...,"ts_ms":1'),
 * `names[i]` column i's name as a JSON string followed by ':' and `values` the row. Values may be None, bool, int or
 * str; for anything else (or a str that is not valid UTF-8) it returns None and the caller takes the general path.
 * The text is byte for byte what sluice.worker.encoders.debezium.dumps_bytes writes for the same event dict (the
 * unit tests compare them): strings escape '"', '\\', and control characters (\b \f \n \r \t, others as \u00xx),
 * everything else, non-ASCII included, is kept.
 *
 * Why: building the event's dicts and encoding them was the largest cost left per streamed row of the webhook sink.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    char *buf;
    Py_ssize_t len, cap;
} Out;

static int grow(Out *o, Py_ssize_t more) {
    if (o->len + more <= o->cap)
        return 0;
    Py_ssize_t cap = o->cap * 2;
    if (cap < o->len + more)
        cap = o->len + more + 256;
    char *buf = PyMem_Realloc(o->buf, (size_t)cap);
    if (buf == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    o->buf = buf;
    o->cap = cap;
    return 0;
}

static int put(Out *o, const char *s, Py_ssize_t n) {
    if (grow(o, n) < 0)
        return -1;
    memcpy(o->buf + o->len, s, (size_t)n);
    o->len += n;
    return 0;
}

static const char HEX[] = "0123456789abcdef";

/* 1 written, 0 not representable here (the caller returns None), -1 error. */
static int put_string(Out *o, PyObject *s) {
    Py_ssize_t n;
    const char *p = PyUnicode_AsUTF8AndSize(s, &n);
    if (p == NULL) {
        PyErr_Clear(); /* e.g. a lone surrogate: the general path reports it */
        return 0;
    }
    if (grow(o, n * 6 + 2) < 0) /* worst case: every byte as \u00xx */
        return -1;
    char *w = o->buf + o->len;
    *w++ = '"';
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            *w++ = (char)c;
            continue;
        }
        *w++ = '\\';
        switch (c) {
        case '"': *w++ = '"'; break;
        case '\\': *w++ = '\\'; break;
        case '\b': *w++ = 'b'; break;
        case '\f': *w++ = 'f'; break;
        case '\n': *w++ = 'n'; break;
        case '\r': *w++ = 'r'; break;
        case '\t': *w++ = 't'; break;
        default:
            *w++ = 'u';
            *w++ = '0';
            *w++ = '0';
            *w++ = HEX[c >> 4];
            *w++ = HEX[c & 15];
        }
    }
    *w++ = '"';
    o->len = w - o->buf;
    return 1;
}

static int put_value(Out *o, PyObject *v) {
    if (v == Py_None)
        return put(o, "null", 4) < 0 ? -1 : 1;
    if (v == Py_True)
        return put(o, "true", 4) < 0 ? -1 : 1;
    if (v == Py_False)
        return put(o, "false", 5) < 0 ? -1 : 1;
    if (PyUnicode_CheckExact(v))
        return put_string(o, v);
    if (PyLong_CheckExact(v)) {
        int overflow = 0;
        long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (x == -1 && PyErr_Occurred())
            return -1;
        if (!overflow) {
            char tmp[24];
            int n = snprintf(tmp, sizeof tmp, "%lld", x);
            return put(o, tmp, n) < 0 ? -1 : 1;
        }
        PyObject *text = PyObject_Str(v); /* beyond 64 bits: every digit, as the general path writes it */
        if (text == NULL)
            return -1;
        Py_ssize_t n;
        const char *p = PyUnicode_AsUTF8AndSize(text, &n);
        int r = p == NULL ? -1 : (put(o, p, n) < 0 ? -1 : 1);
        Py_DECREF(text);
        return r;
    }
    return 0;
}

/* '{' + name:value,... + '}' over `indexes` (or every column when indexes is NULL). */
static int put_object(Out *o, PyObject *names, PyObject *values, PyObject *indexes) {
    Py_ssize_t n = indexes == NULL ? PyTuple_GET_SIZE(values) : PyTuple_GET_SIZE(indexes);
    if (put(o, "{", 1) < 0)
        return -1;
    for (Py_ssize_t j = 0; j < n; j++) {
        Py_ssize_t i = j;
        if (indexes != NULL) {
            i = PyLong_AsSsize_t(PyTuple_GET_ITEM(indexes, j));
            if (i == -1 && PyErr_Occurred())
                return -1;
            if (i < 0 || i >= PyTuple_GET_SIZE(values))
                return 0;
        }
        if (j > 0 && put(o, ",", 1) < 0)
            return -1;
        PyObject *name = PyTuple_GET_ITEM(names, i);
        if (!PyBytes_Check(name))
            return 0;
        if (put(o, PyBytes_AS_STRING(name), PyBytes_GET_SIZE(name)) < 0)
            return -1;
        int r = put_value(o, PyTuple_GET_ITEM(values, i));
        if (r <= 0)
            return r;
    }
    return put(o, "}", 1) < 0 ? -1 : 1;
}

static PyObject *native_event(PyObject *self, PyObject *args) {
    const char *head;
    Py_ssize_t head_len;
    PyObject *names, *key, *values;
    if (!PyArg_ParseTuple(args, "y#O!O!O!", &head, &head_len, &PyTuple_Type, &names, &PyTuple_Type, &key,
                          &PyTuple_Type, &values))
        return NULL;
    if (PyTuple_GET_SIZE(names) != PyTuple_GET_SIZE(values))
        Py_RETURN_NONE;
    Out o = {NULL, 0, 0};
    int r = 1;
    if (grow(&o, head_len + 64 + PyTuple_GET_SIZE(values) * 32) < 0)
        return NULL;
    if (put(&o, head, head_len) < 0)
        r = -1;
    if (r > 0 && PyTuple_GET_SIZE(key) > 0) {
        r = put(&o, ",\"key\":", 7) < 0 ? -1 : 1;
        if (r > 0)
            r = put_object(&o, names, values, key);
    }
    if (r > 0)
        r = put(&o, ",\"row\":", 7) < 0 ? -1 : 1;
    if (r > 0)
        r = put_object(&o, names, values, NULL);
    if (r > 0)
        r = put(&o, "}", 1) < 0 ? -1 : 1;
    PyObject *result = NULL;
    if (r > 0)
        result = PyBytes_FromStringAndSize(o.buf, o.len);
    else if (r == 0)
        result = Py_NewRef(Py_None);
    PyMem_Free(o.buf);
    return result;
}

static PyMethodDef methods[] = {
    {"native_event", native_event, METH_VARARGS,
     "native_event(head, names, key, values) -> bytes, or None when a value needs the general path."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "sluice._eventjson",
    .m_doc = "Native change events as JSON, compiled.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__eventjson(void) { return PyModule_Create(&module); }
