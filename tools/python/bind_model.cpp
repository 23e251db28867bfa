// codebook.load, codebook.compile and codebook.Model (run, show_codes,
// sites, codebooks): the options of `codebook compile` and `codebook run`
// as keyword arguments, in the same text syntax (docs/python.md).
#include <pybind11/stl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <sstream>

#include "ir/codebook.h"
#include "ir/precision.h"
#include "passes/pass_registry.h"
#include "passes/transformer_anatomy.h"
#include "support/error.h"
#include "support/utf8.h"
#include "tools/code_scores.h"
#include "tools/codebook_options.h"
#include "tools/compile_model.h"
#include "tools/forced_codes.h"
#include "tools/generation.h"
#include "tools/intervention_checks.h"
#include "tools/model_io.h"
#include "tools/next_token.h"
#include "tools/precision_option.h"
#include "tools/python/bindings.h"
#include "tools/python/python_convert.h"
#include "tools/python/python_model.h"

namespace cb::python {

namespace {

// A keyword argument as the CLI option's text values: None gives none, a
// string one, a list or tuple one per item (numbers written as numbers).
std::vector<std::string> option_texts(const py::handle& v, const std::string& what) {
  std::vector<std::string> out;
  if (v.is_none()) return out;
  auto one = [&](const py::handle& x) {
    if (py::isinstance<py::str>(x)) return x.cast<std::string>();
    if (py::isinstance<py::bool_>(x)) CB_FAIL(what << ": expected text or a number, not a bool");
    if (py::isinstance<py::int_>(x)) return std::to_string(x.cast<int64_t>());
    if (py::isinstance<py::float_>(x)) return py::str(x).cast<std::string>();
    CB_FAIL(what << ": expected a string (or a list of them), not a " << py::str(x.get_type()).cast<std::string>());
  };
  if (py::isinstance<py::list>(v) || py::isinstance<py::tuple>(v)) {
    for (py::handle x : v) out.push_back(one(x));
  } else {
    out.push_back(one(v));
  }
  return out;
}

// One option value where the CLI takes a comma list ("mlp,attn", "1000,100").
std::string comma_text(const py::handle& v, const std::string& what) {
  std::string out;
  for (const std::string& s : option_texts(v, what)) out += (out.empty() ? "" : ",") + s;
  CB_CHECK(!out.empty(), what << ": no value given");
  return out;
}

// The interventions of `codebook run` from keyword arguments (tools/codebook_options.h).
InterventionSet interventions_from(const py::dict& kw) {
  PassOptions o;
  for (auto [key, option] :
       {std::pair{"ablate", "ablate"}, std::pair{"disable_topk", "disable-topk"},
        std::pair{"disable_slot", "disable-slot"}, std::pair{"force", "force"}, std::pair{"tap", "tap"}})
    if (kw.contains(key))
      for (const std::string& v : option_texts(kw[key], key)) o.add(option, v);
  o.add("ablate-mode", kw.contains("ablate_mode") ? comma_text(kw["ablate_mode"], "ablate_mode") : "skip");
  InterventionSet iv = interventions_from_pass_options(o);
  if (kw.contains("force_file"))
    for (const std::string& path : option_texts(kw["force_file"], "force_file"))
      for (Intervention& it : tools::read_force_file(path)) iv.items.push_back(it);
  return iv;
}

// precision="f32"|"bf16" (docs/precision.md), else what the model records
// (`codebook compile --precision`), else f32; checked against the CPU.
Precision precision_of(const Model& m, const py::dict& kw, const std::string& backend) {
  std::optional<std::string> asked;
  if (kw.contains("precision")) asked = kw["precision"].cast<std::string>();
  return tools::resolve_precision(asked, "precision", m.graph(), backend, "cpu");
}

// The request of `run`/`show_codes`, its state-of:TOKENS forces resolved
// (so the checks see the codes, as in `codebook run`).
RunRequest run_request(const Model& m, const py::dict& kw) {
  for (auto [k, v] : kw) {
    static const char* const known[] = {"ablate",     "ablate_mode", "disable_topk", "disable_slot", "force",
                                        "force_file", "tap",         "backend",      "threads",      "precision"};
    std::string key = k.cast<std::string>();
    CB_CHECK(std::find(std::begin(known), std::end(known), key) != std::end(known),
             "unknown keyword argument '" << key << "'; the interventions are ablate, ablate_mode, disable_topk, "
                                          << "disable_slot, force, force_file, tap; also backend, threads, precision");
  }
  RunRequest r;
  r.interventions = interventions_from(kw);
  if (kw.contains("backend")) r.backend = comma_text(kw["backend"], "backend");
  if (kw.contains("threads")) r.threads = kw["threads"].cast<int>();
  r.precision = precision_of(m, kw, r.backend);
  py::gil_scoped_release release;
  tools::resolve_state_of(r.interventions, m.path(), r.backend, r.threads);
  return r;
}

// The model's inputs from input_ids (a token list or an int array [T] or
// [B, T]), a prompt (tokenised by the model's tokenizer), or named arrays.
std::map<std::string, Tensor> model_inputs(Model& m, const py::object& input_ids, const py::object& prompt,
                                           const py::object& inputs, std::vector<int64_t>* tokens) {
  int given = !input_ids.is_none() + !prompt.is_none();
  CB_CHECK(given + !inputs.is_none() > 0, "give the model's inputs: input_ids, prompt or inputs={name: array}");
  CB_CHECK(given < 2, "give input_ids or prompt, not both");
  std::map<std::string, Tensor> out;
  if (!inputs.is_none()) {
    CB_CHECK(py::isinstance<py::dict>(inputs), "inputs: expected a dict {name: array}");
    for (auto [k, v] : inputs.cast<py::dict>()) {
      std::string name = py::str(k).cast<std::string>();
      out[name] = tensor_from_numpy(v, "inputs['" + name + "']");
    }
  }
  if (!prompt.is_none()) {
    CB_CHECK(py::isinstance<py::str>(prompt), "prompt: expected a string");
    CB_CHECK(m.tokenizer(), "prompt: " << m.arg()
                                       << " records no tokenizer; load it with tokenizer=DIR (e.g. "
                                          "../shared/data/gpt2-bpe) or tokenizer='tokfsm', or give input_ids");
    std::vector<int64_t> ids = m.tokenizer()->encode(prompt.cast<std::string>());
    CB_CHECK(!ids.empty(), "prompt: the text gives no tokens");
    out["input_ids"] = Tensor::from_vector(ids, {1, int64_t(ids.size())});
  }
  if (!input_ids.is_none()) {
    py::array a = py::module_::import("numpy").attr("asarray")(input_ids);
    char kind = a.dtype().kind();
    CB_CHECK(kind == 'i' || kind == 'u',
             "input_ids: expected integer token ids, not dtype " << py::str(a.dtype()).cast<std::string>());
    CB_CHECK(a.ndim() == 1 || a.ndim() == 2,
             "input_ids: expected [T] or [B, T] token ids, not " << a.ndim() << " dimensions");
    py::array_t<int64_t, py::array::c_style | py::array::forcecast> ids(a);
    CB_CHECK(ids.size() > 0, "input_ids: no token ids given");
    int64_t B = a.ndim() == 2 ? ids.shape(0) : 1, T = ids.shape(a.ndim() - 1);
    Tensor t = Tensor::empty(DType::i64, {B, T});
    std::copy_n(ids.data(), B * T, t.data<int64_t>());
    out["input_ids"] = t;
  }
  if (tokens) {
    auto it = out.find("input_ids");
    if (it != out.end() && it->second.rank() == 2) {
      const Tensor& t = it->second;
      tokens->assign(t.data<int64_t>(), t.data<int64_t>() + t.dim(1));  // row 0
    }
  }
  return out;
}

// Runs without the GIL.
RunOutputs run_released(Model& m, const RunRequest& r, const std::map<std::string, Tensor>& inputs) {
  py::gil_scoped_release release;
  return m.run(r, inputs);
}

// `codebook run`'s warnings about interventions that change nothing, as
// Python warnings: a run without interventions gives the codes they act on.
void warn_ineffective(Model& m, const RunRequest& r, const std::map<std::string, Tensor>& inputs,
                      const RunOutputs* clean) {
  const InterventionSet& iv = r.interventions;
  if (iv.items.empty()) return;
  RunOutputs own;
  if (!clean && tools::needs_clean_ids(iv)) {
    RunRequest cr;
    cr.backend = r.backend;
    cr.threads = r.threads;
    cr.tap_intervened = &iv;
    own = run_released(m, cr, inputs);
    clean = &own;
  }
  std::map<std::string, const Tensor*> by_name;
  if (clean)
    for (size_t i = 0; i < clean->names.size(); ++i) by_name[clean->names[i]] = &clean->outs[i];
  auto ids = inputs.find("input_ids");
  std::ostringstream err;
  tools::warn_ineffective_interventions(iv, m.num_layers(), ids != inputs.end() ? ids->second.dim(1) : -1, by_name,
                                        err);
  std::istringstream lines(err.str());
  py::object warn = py::module_::import("warnings").attr("warn");
  for (std::string line; std::getline(lines, line);)
    if (!line.empty())
      warn(line.rfind("warning: ", 0) == 0 ? line.substr(9) : line, py::module_::import("builtins").attr("UserWarning"),
           2);
}

std::vector<std::string> selected_outputs(const RunOutputs& r, const py::object& outputs) {
  if (outputs.is_none()) return r.names;
  std::vector<std::string> selected = option_texts(outputs, "outputs");
  std::string all;
  for (const std::string& n : r.names) all += (all.empty() ? "" : ", ") + n;
  CB_CHECK(!selected.empty(), "outputs: no output names given; the outputs are: " << all);
  for (const std::string& n : selected)
    CB_CHECK(r.find(n), "outputs: no output '" << n << "'; the outputs are: " << all);
  return selected;
}

py::dict run(Model& m, const py::object& input_ids, const py::object& prompt, const py::object& inputs,
             const py::object& outputs, bool check, const py::kwargs& kw) {
  RunRequest r = run_request(m, kw);
  std::map<std::string, Tensor> in = model_inputs(m, input_ids, prompt, inputs, nullptr);
  RunOutputs out = run_released(m, r, in);
  if (check) warn_ineffective(m, r, in, nullptr);
  py::dict d;
  for (const std::string& n : selected_outputs(out, outputs)) d[py::str(n)] = tensor_to_numpy(*out.find(n));
  return d;
}

std::string token_text(const Model& m, int64_t id) {
  return m.tokenizer() ? utf8_replace_invalid(m.tokenizer()->token_bytes(id)) : std::string();
}

py::list next_tokens(const Model& m, const Tensor& logits, int top) {
  std::vector<double> p = tools::next_token_probs(logits, 0);
  py::list l;
  for (int64_t t : tools::top_tokens(p, top)) {
    py::dict e;
    e["token"] = t;
    e["text"] = m.tokenizer() ? py::object(py::str(token_text(m, t))) : py::object(py::none());
    e["p"] = p[size_t(t)];
    l.append(e);
  }
  return l;
}

// Row 0 of ids [B, T, G, k] as an array [T, G, k] (a view of the run's tensor).
py::array row0(const Tensor& t) {
  py::array a = tensor_to_numpy(t);
  return a[py::int_(0)];
}

py::dict show_codes(Model& m, const py::object& input_ids, const py::object& prompt, const py::object& sites,
                    bool scores, bool compare, int top, bool check, const py::kwargs& kw) {
  RunRequest r = run_request(m, kw);
  std::vector<int64_t> tokens;
  std::map<std::string, Tensor> in = model_inputs(m, input_ids, prompt, py::none(), &tokens);
  CB_CHECK(in.at("input_ids").dim(0) == 1,
           "show_codes: give one sequence of token ids (batch 1), not " << in.at("input_ids").dim(0));
  r.show = option_texts(sites, "sites");
  CB_CHECK(!r.show.empty(), "sites: give site names or 'all'");
  RunOutputs out = run_released(m, r, in);
  std::vector<std::pair<std::string, Tensor>> ids = tools::shown_codes(out.shown, out.names, out.outs);
  const Tensor* logits = out.logits();

  py::dict d;
  d["tokens"] = tokens;
  if (m.tokenizer()) {
    py::list texts;
    for (int64_t t : tokens) texts.append(py::str(token_text(m, t)));
    d["token_texts"] = texts;
  } else {
    d["token_texts"] = py::none();
  }
  py::dict codes;
  for (auto& [site, t] : ids) codes[py::str(site)] = row0(t);
  d["codes"] = codes;
  if (logits) d["next"] = next_tokens(m, *logits, top);
  if (scores) {
    py::dict sd, cd;
    for (const SiteRef& s : out.shown) {
      tools::CodeScores sc = tools::code_scores(*out.graph, s, out.names, out.outs);
      sd[py::str(s.name())] = row0(sc.scores);
      if (!sc.inner_product) {
        cd[py::str(s.name())] = py::none();
        continue;
      }
      int64_t T = sc.scores.dim(1), G = sc.G(), k = sc.k();
      py::array_t<double> cos({T, G, k});
      double* c = cos.mutable_data();
      for (int64_t t = 0; t < T; ++t)
        for (int64_t g = 0; g < G; ++g)
          for (int64_t j = 0; j < k; ++j) *c++ = std::isfinite(sc.score(t, g, j)) ? sc.cosine(t, g, j) : std::nan("");
      cd[py::str(s.name())] = cos;
    }
    d["scores"] = sd;
    d["cosines"] = cd;
  }
  bool checks = check && tools::needs_clean_ids(r.interventions);
  if (compare || checks) {
    CB_CHECK(!compare || logits, "compare needs a model with a logits output");
    RunRequest cr;
    cr.show = r.show;
    cr.backend = r.backend;
    cr.threads = r.threads;
    cr.tap_intervened = &r.interventions;
    RunOutputs clean = run_released(m, cr, in);
    if (compare) {
      const Tensor* clean_logits = clean.logits();
      py::dict cc;
      for (auto& [site, t] : tools::shown_codes(clean.shown, clean.names, clean.outs)) cc[py::str(site)] = row0(t);
      d["clean_codes"] = cc;
      d["clean_next"] = next_tokens(m, *clean_logits, top);
      std::vector<double> jsd = tools::jensen_shannon_per_position(*clean_logits, *logits);
      d["jsd"] = jsd.back();
      d["jsd_per_position"] = jsd;
    }
    if (check) warn_ineffective(m, r, in, &clean);
  } else if (check) {
    warn_ineffective(m, r, in, nullptr);
  }
  return d;
}

// The codebook sites of every layer (what `codebook inspect` lists) and whether each has a codebook.
py::list sites(const Model& m) {
  Graph& g = const_cast<Graph&>(m.graph());  // analyze_model reads only
  ModelAnatomy a = analyze_model(g);
  py::list out;
  for (const LayerSites& l : a.layers)
    for (Placement p : kAllPlacements) {
      std::string site = "layer" + std::to_string(l.index) + "." + placement_name(p);
      std::vector<Value*> vs = p == Placement::attn_plus_mlp ? std::vector<Value*>{l.attn} : site_values(l, p);
      py::dict e;
      e["site"] = site;
      e["layer"] = l.index;
      e["placement"] = placement_name(p);
      py::list types;
      for (const Value* v : vs) types.append(v->type.str());
      e["types"] = types;
      e["codebook"] = find_codebook_node(g, site) != nullptr;
      out.append(e);
    }
  return out;
}

// The codebooks of a compiled model: the "codebook.config" metadata (passes/insert_codebooks.h).
py::list codebooks(const Model& m) {
  if (codebook_nodes(m.graph()).empty()) return py::list();
  return json_to_python(json_parse(codebook_config_json(m.graph()), "codebook config")["codebooks"]);
}

std::shared_ptr<Model> load(const std::string& path, const py::object& tokenizer) {
  std::shared_ptr<Model> m;
  {
    py::gil_scoped_release release;
    m = std::make_shared<Model>(path);
  }
  if (!tokenizer.is_none()) m->set_tokenizer(py::str(tokenizer).cast<std::string>());
  return m;
}

std::shared_ptr<Model> compile(const Model& model, const py::object& at, const py::object& codes, const py::object& k,
                               const py::object& groups, const py::object& layers, const std::string& metric,
                               int64_t seed, const py::object& output, const py::object& tokenizer,
                               bool external_data) {
  PassOptions o;
  o.add("at", comma_text(at, "at"));
  o.add("codes", comma_text(codes, "codes"));
  o.add("k", comma_text(k, "k"));
  o.add("groups", comma_text(groups, "groups"));
  o.add("layers", comma_text(layers, "layers"));
  o.add("metric", metric);
  o.add("seed", std::to_string(seed));
  CodebookConfig cfg = codebook_config_from_pass_options(o);
  std::optional<std::string> spec;
  if (!tokenizer.is_none())
    spec = py::str(tokenizer).cast<std::string>();
  else if (!model.tokenizer_spec().empty())
    spec = model.tokenizer_spec();
  std::shared_ptr<TemporaryModelFile> temp;
  std::string path;
  if (output.is_none()) {
    // A temporary file, removed with the model it backs.
    temp = std::make_shared<TemporaryModelFile>();
    std::string pattern = (std::filesystem::temp_directory_path() / "codebook-compiled-XXXXXX").string();
    std::vector<char> name(pattern.begin(), pattern.end());
    name.push_back('\0');
    int fd = mkstemp(name.data());
    CB_CHECK(fd >= 0, "compile: cannot create a temporary file like " << pattern);
    close(fd);
    temp->path = path = std::string(name.data()) + ".onnx";
    std::filesystem::rename(name.data(), path);
  } else {
    path = py::str(output).cast<std::string>();
  }
  py::gil_scoped_release release;
  tools::compile_model(model.path(), cfg, spec, path, external_data);
  return std::make_shared<Model>(path, temp);
}

// The prompts of generate: input_ids as token ids [T], a batch [B, T] or a
// list of id lists (of any lengths), or prompt as text or a list of texts.
// `batch` says whether a list of prompts was given.
std::vector<std::vector<int64_t>> generate_prompts(const Model& m, const py::object& input_ids,
                                                   const py::object& prompt, bool& batch) {
  CB_CHECK(input_ids.is_none() != prompt.is_none(), "generate: give input_ids or prompt (one of them)");
  std::vector<std::vector<int64_t>> prompts;
  if (!prompt.is_none()) {
    batch = !py::isinstance<py::str>(prompt);
    CB_CHECK(m.tokenizer(), "prompt: " << m.arg()
                                       << " records no tokenizer; load it with tokenizer=DIR (e.g. "
                                          "../shared/data/gpt2-bpe) or tokenizer='tokfsm', or give input_ids");
    for (const std::string& text : option_texts(prompt, "prompt")) {
      prompts.push_back(m.tokenizer()->encode(text));
      CB_CHECK(!prompts.back().empty(), "prompt: the text '" << text << "' gives no tokens");
    }
    CB_CHECK(!prompts.empty(), "prompt: no prompt given");
    return prompts;
  }
  auto ids_of = [](const py::handle& row) {
    py::array a = py::module_::import("numpy").attr("asarray")(row);
    CB_CHECK(a.dtype().kind() == 'i' || a.dtype().kind() == 'u',
             "input_ids: expected integer token ids, not dtype " << py::str(a.dtype()).cast<std::string>());
    CB_CHECK(a.ndim() == 1, "input_ids: expected a list of token ids, not " << a.ndim() << " dimensions");
    py::array_t<int64_t, py::array::c_style | py::array::forcecast> ids(a);
    CB_CHECK(ids.size() > 0, "input_ids: no token ids given");
    return std::vector<int64_t>(ids.data(), ids.data() + ids.size());
  };
  py::object np = py::module_::import("numpy");
  const bool rows = (py::isinstance<py::list>(input_ids) || py::isinstance<py::tuple>(input_ids))
                        ? py::len(input_ids) > 0 && !py::isinstance<py::int_>(input_ids.cast<py::sequence>()[0]) &&
                              !np.attr("isscalar")(input_ids.cast<py::sequence>()[0]).cast<bool>()
                        : py::array(np.attr("asarray")(input_ids)).ndim() == 2;
  batch = rows;
  if (!rows) return {ids_of(input_ids)};
  for (py::handle row : input_ids) prompts.push_back(ids_of(row));
  CB_CHECK(!prompts.empty(), "input_ids: no prompts given");
  return prompts;
}

// stop_at: one item or a list of them; an int is a token id (an EOS), a
// tuple of ints a token sequence, a string text the new tokens' text contains.
tools::StopConditions stop_conditions(const py::object& stop_at) {
  tools::StopConditions stop;
  if (stop_at.is_none()) return stop;
  auto add = [&](const py::handle& x) {
    if (py::isinstance<py::str>(x)) {
      std::string t = x.cast<std::string>();
      CB_CHECK(!t.empty(), "stop_at: empty text");
      stop.texts.push_back(t);
    } else if (py::isinstance<py::tuple>(x)) {
      std::vector<int64_t> seq = x.cast<std::vector<int64_t>>();
      CB_CHECK(!seq.empty(), "stop_at: an empty token sequence");
      stop.sequences.push_back(seq);
    } else if (py::isinstance<py::int_>(x) && !py::isinstance<py::bool_>(x)) {
      stop.sequences.push_back({x.cast<int64_t>()});
    } else {
      CB_FAIL("stop_at: expected token ids (int), sequences (tuple of ints) or text (str), not a "
              << py::str(x.get_type()).cast<std::string>());
    }
  };
  if (py::isinstance<py::list>(stop_at))
    for (py::handle x : stop_at) add(x);
  else
    add(stop_at);
  for (const std::vector<int64_t>& s : stop.sequences)
    for (int64_t id : s) CB_CHECK(id >= 0, "stop_at: token id " << id << " is negative");
  return stop;
}

// Continues prompts with a KV cache (tools/generation.h), the interventions at
// every position; the GIL is released while it runs.
py::object generate(Model& m, const py::object& input_ids, const py::object& prompt, int64_t max_new,
                    double temperature, int64_t top_k, double top_p, uint64_t seed, const py::object& stop_at,
                    bool ignore_eos, int64_t context, const py::kwargs& kw) {
  for (auto [k, v] : kw) {
    static const char* const known[] = {"ablate",     "ablate_mode", "disable_topk", "disable_slot", "force",
                                        "force_file", "backend",     "threads",      "precision"};
    std::string key = k.cast<std::string>();
    CB_CHECK(std::find(std::begin(known), std::end(known), key) != std::end(known),
             "unknown keyword argument '" << key << "'; the interventions are ablate, ablate_mode, disable_topk, "
                                          << "disable_slot, force, force_file; also backend, threads, precision");
  }
  CB_CHECK(max_new >= 0, "max_new must be >= 0, got " << max_new);
  CB_CHECK(context >= 0, "context must be > 0 (0: the model's), got " << context);
  CB_CHECK(temperature > 0 || (top_k == 0 && top_p == 1.0),
           "top_k and top_p choose among sampled tokens: give temperature > 0 too");
  GenerateRequest r;
  bool batch = false;
  r.generation.prompts = generate_prompts(m, input_ids, prompt, batch);
  r.generation.max_new = max_new;
  r.generation.sampling = {temperature, top_k, top_p, seed};
  tools::Sampler check(r.generation.sampling);  // checks the values
  r.generation.stop = stop_conditions(stop_at);
  r.ignore_eos = ignore_eos;
  r.context = context;
  r.interventions = interventions_from(kw);
  if (kw.contains("backend")) r.backend = comma_text(kw["backend"], "backend");
  if (kw.contains("threads")) r.threads = kw["threads"].cast<int>();
  r.precision = precision_of(m, kw, r.backend);
  std::vector<tools::Continuation> done;
  {
    py::gil_scoped_release release;
    done = m.generate(r);
  }
  py::list out;
  for (size_t i = 0; i < done.size(); ++i) {
    py::dict d;
    d["prompt_ids"] = r.generation.prompts[i];
    d["ids"] = done[i].ids;
    if (m.tokenizer()) {
      std::string bytes;
      for (int64_t t : done[i].ids) bytes += m.tokenizer()->token_bytes(t);
      d["text"] = py::bytes(bytes).attr("decode")("utf-8", "replace");
    }
    d["stop"] = done[i].stop;
    out.append(d);
  }
  return batch ? py::object(out) : py::object(out[0]);
}

std::vector<std::string> value_names(const std::vector<Value*>& values) {
  std::vector<std::string> v;
  for (const Value* x : values) v.push_back(x->name);
  return v;
}

}  // namespace

void bind_model(py::module_& m) {
  py::class_<Model, std::shared_ptr<Model>>(m, "Model", "A model loaded by codebook.load or made by codebook.compile.")
      .def_property_readonly("path", &Model::path, "the model file")
      .def_property_readonly("temporary", &Model::is_temporary,
                             "whether the file is a temporary one (compile without output=), removed with the model")
      .def_property_readonly(
          "tokenizer",
          [](const Model& mm) {
            return mm.tokenizer_spec().empty() ? py::object(py::none()) : py::object(py::str(mm.tokenizer_spec()));
          },
          "the tokenizer spec prompts are tokenised with, or None")
      .def_property_readonly("num_layers", &Model::num_layers)
      .def_property_readonly(
          "inputs", [](const Model& mm) { return value_names(mm.graph().inputs); }, "the graph's input names")
      .def_property_readonly(
          "outputs", [](const Model& mm) { return value_names(mm.graph().outputs); }, "the graph's output names")
      .def("sites", &sites, "The codebook sites of every layer: [{site, layer, placement, types, codebook}].")
      .def("codebooks", &codebooks,
           "The model's codebooks: [{site, layer, placement, width, groups, num_codes, k, metric}].")
      .def(
          "tokenize",
          [](const Model& mm, const std::string& text) {
            CB_CHECK(mm.tokenizer(), "tokenize: " << mm.arg() << " records no tokenizer; load it with tokenizer=...");
            return mm.tokenizer()->encode(text);
          },
          py::arg("text"), "The token ids of `text` (as run --prompt tokenises it).")
      .def("token_text", &token_text, py::arg("id"), "The text of one token ('' without a tokenizer).")
      .def("run", &run, py::arg("input_ids") = py::none(), py::kw_only(), py::arg("prompt") = py::none(),
           py::arg("inputs") = py::none(), py::arg("outputs") = py::none(), py::arg("check") = true,
           "Runs the model; returns {output name: numpy array}. Keyword arguments as `codebook run`'s options: "
           "ablate, ablate_mode, disable_topk, disable_slot, force, force_file, tap (strings in the CLI's syntax, "
           "or lists of them), backend, threads.")
      .def("show_codes", &show_codes, py::arg("input_ids") = py::none(), py::kw_only(), py::arg("prompt") = py::none(),
           py::arg("sites") = "all", py::arg("scores") = false, py::arg("compare") = false, py::arg("top") = 5,
           py::arg("check") = true,
           "What `codebook run --show-codes SITES` prints, as data: tokens, token_texts, codes {site: [T, G, k]}, "
           "next; with scores=True scores and cosines; with compare=True clean_codes, clean_next, jsd (bits).")
      .def("generate", &generate, py::arg("input_ids") = py::none(), py::kw_only(), py::arg("prompt") = py::none(),
           py::arg("max_new") = 16, py::arg("temperature") = 0.0, py::arg("top_k") = 0, py::arg("top_p") = 1.0,
           py::arg("seed") = 0, py::arg("stop_at") = py::none(), py::arg("ignore_eos") = false, py::arg("context") = 0,
           "Continues a prompt with a KV cache as `codebook generate` does, greedy or sampled (temperature, top_k, "
           "top_p, seed), with the interventions (ablate, ablate_mode, disable_topk, disable_slot, force, "
           "force_file) at every position: {prompt_ids, ids, text, stop}; a list of prompts gives a list (those "
           "of one length decoded as a batch; prompt i sampled with seed + i). Stops at the model's eos id unless "
           "ignore_eos, and at stop_at: token ids (int), sequences (tuple) or text (str).")
      .def("__repr__", [](const Model& mm) { return "<codebook.Model " + mm.path() + ">"; });

  m.def("load", &load, py::arg("path"), py::arg("tokenizer") = py::none(),
        "Loads a model: an ONNX file, a Hugging Face folder, the original library's folder, or a `codebook train` "
        "run or checkpoint folder. tokenizer: a GPT-2 BPE folder or 'tokfsm[:BASE]' for prompts (default: the one "
        "the model records).");
  m.def("compile", &compile, py::arg("model"), py::kw_only(), py::arg("at") = "mlp", py::arg("codes") = 1000,
        py::arg("k") = 8, py::arg("groups") = 1, py::arg("layers") = "all", py::arg("metric") = "inner_product",
        py::arg("seed") = 0, py::arg("output") = py::none(), py::arg("tokenizer") = py::none(),
        py::arg("external_data") = false,
        "Inserts codebooks as `codebook compile` does and returns the compiled model, written to output (or a "
        "temporary file).");
}

}  // namespace cb::python
