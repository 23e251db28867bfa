// cb::Graph -> ONNX (see onnx_export.h).
#include "frontend/onnx_export.h"

#include <climits>
#include <filesystem>
#include <set>

#include "onnx/onnx.pb.h"
#include "support/content_hash.h"
#include "support/error.h"
#include "support/file_io.h"
#include "support/test_delay.h"

namespace cb {

namespace {

constexpr int64_t kMinIrVersion = 8;  // goes with opset 18
constexpr size_t kExternalAlignment = 64;

// Collects the bytes of tensors that go to the external data file.
struct ExternalData {
  int64_t threshold = -1;
  std::string bytes;
  // The "location" entries written so far: the file's name depends on the
  // hash of all the bytes, so it is filled in once they are complete.
  std::vector<std::string*> locations;
};

void type_to_proto(const TensorType& t, onnx::TypeProto* tp) {
  auto* tt = tp->mutable_tensor_type();
  if (t.dtype != DType::undefined) tt->set_elem_type(dtype_to_onnx(t.dtype));
  if (!t.shape.rank_known) return;
  auto* shape = tt->mutable_shape();
  for (const Dim& d : t.shape.dims) {
    auto* dim = shape->add_dim();
    if (d.is_static())
      dim->set_dim_value(d.value);
    else if (d.is_symbolic())
      dim->set_dim_param(d.symbol);
  }
}

void value_info(const Value& v, onnx::ValueInfoProto* vi) {
  vi->set_name(v.name);
  type_to_proto(v.type, vi->mutable_type());
}

// Every value a graph's nodes (or its subgraphs' nodes) read, and its outputs.
void collect_uses(const Graph& g, std::set<const Value*>& used) {
  for (auto& n : g.nodes()) {
    for (Value* v : n->inputs)
      if (v) used.insert(v);
    for (auto& [k, a] : n->attrs)
      if (auto sg = std::get_if<std::shared_ptr<Graph>>(&a))
        if (*sg) collect_uses(**sg, used);
  }
  for (Value* v : g.outputs) used.insert(v);
}

class Exporter {
 public:
  explicit Exporter(ExternalData* ext) : ext_(ext) {}
  void graph_to_proto(const Graph& g, onnx::GraphProto* gp);

 private:
  void node_to_proto(const Node& n, onnx::NodeProto* np);
  void initializer(const Value& v, onnx::TensorProto* tp);
  ExternalData* ext_;
};

void Exporter::initializer(const Value& v, onnx::TensorProto* tp) {
  const Tensor& t = *v.constant;
  if (!ext_ || ext_->threshold < 0 || int64_t(t.nbytes()) <= ext_->threshold) {
    tensor_to_onnx(t, v.name, tp);
    return;
  }
  tp->set_name(v.name);
  tp->set_data_type(dtype_to_onnx(t.dtype()));
  for (int64_t d : t.dims()) tp->add_dims(d);
  std::string& data = ext_->bytes;
  data.resize((data.size() + kExternalAlignment - 1) / kExternalAlignment * kExternalAlignment, '\0');
  size_t offset = data.size();
  data.append(static_cast<const char*>(t.raw()), t.nbytes());
  tp->set_data_location(onnx::TensorProto::EXTERNAL);
  auto add = [&](const char* k, const std::string& val) {
    auto* e = tp->add_external_data();
    e->set_key(k);
    e->set_value(val);
  };
  add("location", "");
  ext_->locations.push_back(tp->mutable_external_data(tp->external_data_size() - 1)->mutable_value());
  add("offset", std::to_string(offset));
  add("length", std::to_string(t.nbytes()));
}

void Exporter::node_to_proto(const Node& n, onnx::NodeProto* np) {
  np->set_name(n.name);
  np->set_op_type(n.op_type);
  if (!n.domain.empty()) np->set_domain(n.domain);
  size_t nin = n.inputs.size();
  while (nin > 0 && !n.inputs[nin - 1]) --nin;
  for (size_t i = 0; i < nin; ++i) np->add_input(n.inputs[i] ? n.inputs[i]->name : "");
  size_t nout = n.outputs.size();
  while (nout > 0 && !n.outputs[nout - 1]) --nout;
  for (size_t i = 0; i < nout; ++i) np->add_output(n.outputs[i] ? n.outputs[i]->name : "");
  using A = onnx::AttributeProto;
  for (auto& [key, val] : n.attrs) {
    A* a = np->add_attribute();
    a->set_name(key);
    std::visit(
        [&, &key = key](auto& v) {  // `key` by name: clang before 16 cannot capture a structured binding
          using T = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<T, int64_t>) {
            a->set_type(A::INT);
            a->set_i(v);
          } else if constexpr (std::is_same_v<T, float>) {
            a->set_type(A::FLOAT);
            a->set_f(v);
          } else if constexpr (std::is_same_v<T, std::string>) {
            a->set_type(A::STRING);
            a->set_s(v);
          } else if constexpr (std::is_same_v<T, Tensor>) {
            a->set_type(A::TENSOR);
            tensor_to_onnx(v, "", a->mutable_t());
          } else if constexpr (std::is_same_v<T, std::shared_ptr<Graph>>) {
            CB_CHECK(v, n.describe() << ": attribute '" << key << "' holds no graph");
            a->set_type(A::GRAPH);
            graph_to_proto(*v, a->mutable_g());
          } else if constexpr (std::is_same_v<T, std::vector<int64_t>>) {
            a->set_type(A::INTS);
            for (auto x : v) a->add_ints(x);
          } else if constexpr (std::is_same_v<T, std::vector<float>>) {
            a->set_type(A::FLOATS);
            for (auto x : v) a->add_floats(x);
          } else {
            static_assert(std::is_same_v<T, std::vector<std::string>>);
            a->set_type(A::STRINGS);
            for (auto& x : v) a->add_strings(x);
          }
        },
        val);
  }
}

void Exporter::graph_to_proto(const Graph& g, onnx::GraphProto* gp) {
  gp->set_name(g.name);
  std::set<const Value*> used;
  collect_uses(g, used);
  std::set<const Value*> is_input(g.inputs.begin(), g.inputs.end());
  std::set<const Value*> is_output(g.outputs.begin(), g.outputs.end());
  for (Value* v : g.inputs) value_info(*v, gp->add_input());
  // Constants that are read, and inputs with a default value (an initializer
  // of the same name, as in ONNX IR < 4).
  for (auto& v : g.values())
    if (v->is_constant() && (used.count(v.get()) || is_input.count(v.get()))) initializer(*v, gp->add_initializer());
  for (auto& n : g.nodes()) node_to_proto(*n, gp->add_node());
  for (Value* v : g.outputs) value_info(*v, gp->add_output());
  for (auto& v : g.values())
    if (v->producer && !is_output.count(v.get()) && v->type.dtype != DType::undefined)
      value_info(*v, gp->add_value_info());
}

void model_to_proto(const Graph& g, ExternalData* ext, onnx::ModelProto* m) {
  m->set_ir_version(std::max<int64_t>(g.ir_version, kMinIrVersion));
  m->set_producer_name("codebook");
  std::map<std::string, int64_t> opsets = g.opsets;
  opsets[""] = std::max<int64_t>(opsets.count("") ? opsets[""] : 0, kMinExportOpset);
  opsets.erase("ai.onnx");
  for (auto& n : g.nodes())
    if (!n->domain.empty() && !opsets.count(n->domain)) opsets[n->domain] = 1;
  for (auto& [domain, version] : opsets) {
    auto* o = m->add_opset_import();
    o->set_domain(domain);
    o->set_version(version);
  }
  for (auto& [k, v] : g.metadata) {
    auto* e = m->add_metadata_props();
    e->set_key(k);
    e->set_value(v);
  }
  Exporter(ext).graph_to_proto(g, m->mutable_graph());
}

std::string serialize(const onnx::ModelProto& m, const std::string& what) {
  size_t size = m.ByteSizeLong();
  CB_CHECK(size <= size_t(INT_MAX), what << ": the model is " << size / (1 << 20)
                                         << " MiB, over protobuf's 2 GB limit; export it with external data");
  std::string bytes;
  CB_CHECK(m.SerializeToString(&bytes), what << ": cannot serialize the model");
  return bytes;
}

std::string base_name(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// Removes the external data files of `path`'s earlier exports (or of an
// export killed before its model was renamed into place), keeping `keep`:
// "<model file>.data" (the name before content hashes) and
// "<model file>.<hash>.data". Best effort.
void remove_stale_external_data(const std::string& path, const std::string& keep) {
  namespace fs = std::filesystem;
  fs::path model(path);
  fs::path dir = model.has_parent_path() ? model.parent_path() : fs::path(".");
  std::string base = model.filename().string();
  std::error_code ec;
  fs::directory_iterator it(dir, ec), end;
  std::vector<fs::path> stale;
  for (; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (name == keep) continue;
    if (name == base + ".data" || (name.size() == base.size() + 1 + 16 + 5 && external_data_hash(name) &&
                                   name.compare(0, base.size() + 1, base + ".") == 0))
      stale.push_back(it->path());
  }
  for (auto& p : stale) fs::remove(p, ec);
}

}  // namespace

void tensor_to_onnx(const Tensor& t, const std::string& name, onnx::TensorProto* tp) {
  CB_CHECK(t.defined(), "tensor '" << name << "' is undefined");
  if (!name.empty()) tp->set_name(name);
  tp->set_data_type(dtype_to_onnx(t.dtype()));
  for (int64_t d : t.dims()) tp->add_dims(d);
  tp->set_raw_data(static_cast<const char*>(t.raw()), t.nbytes());
}

std::string export_onnx_bytes(const Graph& g) {
  onnx::ModelProto m;
  model_to_proto(g, nullptr, &m);
  return serialize(m, "export");
}

std::optional<std::string> external_data_hash(const std::string& file_name) {
  const std::string suffix = ".data";
  if (file_name.size() < 1 + 16 + suffix.size() ||
      file_name.compare(file_name.size() - suffix.size(), suffix.size(), suffix) != 0)
    return std::nullopt;
  size_t at = file_name.size() - suffix.size() - 16;
  if (file_name[at - 1] != '.') return std::nullopt;
  std::string hash = file_name.substr(at, 16);
  if (hash.find_first_not_of("0123456789abcdef") != std::string::npos) return std::nullopt;
  return hash;
}

void export_onnx(const Graph& g, const std::string& path, const ExportOptions& opts) {
  ExternalData ext;
  ext.threshold = opts.external_data_threshold;
  if (ext.threshold >= 0) {  // one allocation for the external bytes (a hint: subgraphs not counted)
    size_t total = 0;
    for (auto& v : g.values())
      if (v->constant && int64_t(v->constant->nbytes()) > ext.threshold)
        total += v->constant->nbytes() + kExternalAlignment;
    ext.bytes.reserve(total);
  }
  onnx::ModelProto m;
  model_to_proto(g, &ext, &m);
  // The data file's name holds the hash of its bytes, so a model and its data
  // are always a pair: the data goes in first under its own name, the model
  // (which names it) last; a kill in between leaves the old model with its
  // old data. Data files of earlier exports are removed afterwards.
  std::string data_name;
  if (!ext.bytes.empty()) {
    data_name = base_name(path) + "." + content_hash_hex(ext.bytes.data(), ext.bytes.size()) + ".data";
    for (std::string* location : ext.locations) *location = data_name;
  }
  std::string bytes = serialize(m, "'" + path + "'");
  if (!ext.bytes.empty()) {
    write_file_atomic((std::filesystem::path(path).parent_path() / data_name).string(), ext.bytes);
    test_write_delay();
  }
  write_file_atomic(path, bytes);
  test_write_delay();
  remove_stale_external_data(path, data_name);
}

}  // namespace cb
