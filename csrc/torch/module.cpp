// The Python module of the extension: deepops._C (CUDA build) or deepops._C_emu (emulated build, DEEPOPS_EMULATE).
// Importing it runs the TORCH_LIBRARY_IMPL blocks of the other files of this extension, which register the kernels
// with PyTorch's dispatcher under the schemas that deepops/_library.py defines (CUDA key, or CPU key when
// emulated).  The emulated module also has the emulator's controls: the thread schedule and the launch counts.
#include <Python.h>

#if defined(DEEPOPS_EMULATE)
#include <cstdint>
#include <string>

#include "../kernels/arch/emulator.h"

namespace {
namespace emu = deepops::emu;

// set_schedule("forward" | "reverse" | "shuffle[:SEED]")
PyObject* set_schedule(PyObject*, PyObject* arg) {
  const char* text = PyUnicode_AsUTF8(arg);
  if (!text) return nullptr;
  emu::Schedule s;
  uint64_t seed;
  if (!emu::parse_schedule(text, &s, &seed)) {
    PyErr_Format(PyExc_ValueError, "schedule must be 'forward', 'reverse' or 'shuffle[:SEED]', got '%s'", text);
    return nullptr;
  }
  emu::set_schedule(s, seed);
  Py_RETURN_NONE;
}

PyObject* schedule(PyObject*, PyObject*) {
  uint64_t seed = 0;
  switch (emu::schedule(&seed)) {
    case emu::Schedule::kForward: return PyUnicode_FromString("forward");
    case emu::Schedule::kReverse: return PyUnicode_FromString("reverse");
    case emu::Schedule::kShuffle: return PyUnicode_FromString(("shuffle:" + std::to_string(seed)).c_str());
  }
  Py_RETURN_NONE;
}

// {kernel name with template arguments: launches}
PyObject* kernel_launch_counts(PyObject*, PyObject*) {
  PyObject* d = PyDict_New();
  if (!d) return nullptr;
  for (const auto& [name, count] : emu::kernel_launch_counts()) {
    PyObject* v = PyLong_FromLongLong(count);
    if (!v || PyDict_SetItemString(d, name.c_str(), v) != 0) {
      Py_XDECREF(v);
      Py_DECREF(d);
      return nullptr;
    }
    Py_DECREF(v);
  }
  return d;
}

PyObject* reset_kernel_launch_counts(PyObject*, PyObject*) {
  emu::reset_kernel_launch_counts();
  Py_RETURN_NONE;
}

PyObject* registered_kernels(PyObject*, PyObject*) {
  const auto names = emu::registered_kernels();
  PyObject* l = PyList_New(static_cast<Py_ssize_t>(names.size()));
  if (!l) return nullptr;
  for (size_t i = 0; i < names.size(); ++i) {
    PyObject* s = PyUnicode_FromString(names[i].c_str());
    if (!s) {
      Py_DECREF(l);
      return nullptr;
    }
    PyList_SET_ITEM(l, static_cast<Py_ssize_t>(i), s);
  }
  return l;
}

PyObject* set_force_64bit_indices(PyObject*, PyObject* arg) {
  const int on = PyObject_IsTrue(arg);
  if (on < 0) return nullptr;
  emu::set_force_64bit_indices(on != 0);
  Py_RETURN_NONE;
}

PyMethodDef methods[] = {
    {"set_schedule", set_schedule, METH_O, "Thread order within each block: 'forward', 'reverse', 'shuffle[:SEED]'."},
    {"schedule", schedule, METH_NOARGS, "The current thread order."},
    {"kernel_launch_counts", kernel_launch_counts, METH_NOARGS, "Launches per __global__ kernel instantiation."},
    {"reset_kernel_launch_counts", reset_kernel_launch_counts, METH_NOARGS, "Zero the launch counts."},
    {"registered_kernels", registered_kernels, METH_NOARGS,
     "Every __global__ kernel instantiation the launchers can launch (sorted names)."},
    {"set_force_64bit_indices", set_force_64bit_indices, METH_O,
     "Test hook: take the 64-bit index variants (pool) even for small tensors."},
    {nullptr, nullptr, 0, nullptr}};
}  // namespace

extern "C" PyObject* PyInit__C_emu(void) {
  static PyModuleDef def = {PyModuleDef_HEAD_INIT, "_C_emu",
                            "deepops CUDA kernels run on the CPU by an emulated launch (registered for CPU tensors)",
                            -1, methods};
  return PyModule_Create(&def);
}

#else

extern "C" PyObject* PyInit__C(void) {
  static PyModuleDef def = {PyModuleDef_HEAD_INIT, "_C", "deepops CUDA kernels (registered with torch.ops.deepops)",
                            -1, nullptr};
  return PyModule_Create(&def);
}

#endif
