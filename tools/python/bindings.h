// The parts of the codebook._codebook module, one file each (module.cpp
// puts them together and maps errors to codebook.Error).
#pragma once
#include <pybind11/pybind11.h>

namespace cb::python {

namespace py = pybind11;

void bind_model(py::module_& m);  // load, compile, Model (bind_model.cpp)
void bind_train(py::module_& m);  // train (bind_train.cpp)
void bind_cache(py::module_& m);  // Cache (bind_cache.cpp)

}  // namespace cb::python
