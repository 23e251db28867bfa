// codebook.train: `codebook train` (tools/train_run.h) with the config as a
// YAML file or a dict, the log lines handed to a progress callback, and the
// GIL released while it trains (taken back for each callback and to let
// Ctrl-C stop it between steps).
#include <pybind11/stl.h>

#include "support/error.h"
#include "tools/python/bindings.h"
#include "tools/python/python_convert.h"
#include "tools/train_run.h"

namespace cb::python {

namespace {

std::string path_text(const py::handle& v) { return py::str(py::module_::import("os").attr("fspath")(v)); }

// Overrides "group.key=value", as a list of such strings or a dict {"group.key": value}.
std::vector<std::string> override_texts(const py::object& v) {
  std::vector<std::string> out;
  if (v.is_none()) return out;
  if (py::isinstance<py::dict>(v)) {
    for (auto [k, x] : v.cast<py::dict>()) {
      std::string value = py::isinstance<py::bool_>(x) ? (x.cast<bool>() ? "true" : "false")
                          : x.is_none()                ? "null"
                                                       : py::str(x).cast<std::string>();
      out.push_back(py::str(k).cast<std::string>() + "=" + value);
    }
    return out;
  }
  CB_CHECK(py::isinstance<py::list>(v) || py::isinstance<py::tuple>(v),
           "overrides: expected a list of 'group.key=value' strings or a dict");
  for (py::handle x : v) {
    CB_CHECK(py::isinstance<py::str>(x), "overrides: expected 'group.key=value' strings");
    out.push_back(x.cast<std::string>());
  }
  return out;
}

tools::TrainRequest train_request(const py::object& config, const py::object& output, const py::object& overrides,
                                  const py::object& resume, const py::object& max_steps, const py::object& stop_at,
                                  bool checkpoints) {
  tools::TrainRequest r;
  if (py::isinstance<py::dict>(config))
    r.config = json_from_python(config, "config");
  else if (!config.is_none())
    r.config_file = path_text(config);
  r.overrides = override_texts(overrides);
  if (!max_steps.is_none()) r.overrides.push_back("training_args.max_steps=" + py::str(max_steps).cast<std::string>());
  if (!resume.is_none()) r.resume = path_text(resume);
  if (!output.is_none()) r.output = path_text(output);
  if (!stop_at.is_none()) r.stop_at = stop_at.cast<int64_t>();
  r.checkpoints = checkpoints;
  return r;
}

py::dict train(const py::object& config, const py::object& output, const py::object& overrides,
               const py::object& resume, const py::object& max_steps, const py::object& stop_at, bool checkpoints,
               const py::object& progress, bool quiet) {
  tools::TrainRequest r = train_request(config, output, overrides, resume, max_steps, stop_at, checkpoints);
  tools::TrainEvents events;
  events.log = [&](const Json& line) {
    if (progress.is_none()) return;
    py::gil_scoped_acquire gil;
    progress(json_to_python(line));
  };
  events.note = [&](const std::string& text) {
    if (quiet) return;
    py::gil_scoped_acquire gil;
    py::module_::import("sys").attr("stderr").attr("write")(text + "\n");
  };
  events.step = [&](int64_t, int64_t, const StepMetrics&, double) {
    py::gil_scoped_acquire gil;
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();  // Ctrl-C stops between steps
  };
  tools::TrainOutcome o;
  {
    py::gil_scoped_release release;
    o = tools::run_training(r, events);
  }
  py::dict d;
  d["output"] = o.output;
  d["step"] = o.step;
  d["max_steps"] = o.max_steps;
  d["model"] = o.model_path.empty() ? py::object(py::none()) : py::object(py::str(o.model_path));
  d["history"] = json_to_python(o.history);
  return d;
}

}  // namespace

void bind_train(py::module_& m) {
  m.def("train", &train, py::arg("config") = py::none(), py::kw_only(), py::arg("output") = py::none(),
        py::arg("overrides") = py::none(), py::arg("resume") = py::none(), py::arg("max_steps") = py::none(),
        py::arg("stop_at") = py::none(), py::arg("checkpoints") = true, py::arg("progress") = py::none(),
        py::arg("quiet") = false,
        "Trains as `codebook train` does; returns {output, step, max_steps, model, history}.");
  m.def(
      "train_config",
      [](const py::object& config, const py::object& overrides, const py::object& resume) {
        tools::TrainRequest r = train_request(config, py::none(), overrides, resume, py::none(), py::none(), true);
        return json_to_python(tools::resolve_request_config(r));
      },
      py::arg("config") = py::none(), py::kw_only(), py::arg("overrides") = py::none(), py::arg("resume") = py::none(),
      "The resolved training configuration (what `codebook train --print-config` prints), as a dict.");
}

}  // namespace cb::python
