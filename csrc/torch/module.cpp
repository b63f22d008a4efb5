// The Python module deepops._C.  It has no Python functions: importing it runs the TORCH_LIBRARY_IMPL blocks of
// the other files of this extension, which register the CUDA kernels with PyTorch's dispatcher under the schemas
// that deepops/_library.py defines.
#include <Python.h>

extern "C" PyObject* PyInit__C(void) {
  static PyModuleDef def = {PyModuleDef_HEAD_INIT, "_C", "deepops CUDA kernels (registered with torch.ops.deepops)",
                            -1, nullptr};
  return PyModule_Create(&def);
}
