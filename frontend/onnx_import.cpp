// ONNX ModelProto -> cb::Graph (see onnx_import.h). The importer walks the
// graph once: initializers and Constant nodes become constant values (raw
// bytes taken over from the parsed protobuf, external data memory-mapped),
// model-local functions are inlined, older-opset node forms are upgraded
// (onnx_opset_upgrade.h) and every node is checked against the op registry and
// typed as it is added, so that upgrades can depend on input types.
#include "frontend/onnx_import.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/wire_format_lite.h>
#include <sys/mman.h>

#include <climits>
#include <cstring>
#include <unordered_map>
#include <unordered_set>

#include "frontend/onnx_export.h"
#include "frontend/onnx_opset_upgrade.h"
#include "ir/op_registry.h"
#include "ir/verifier.h"
#include "onnx/onnx.pb.h"
#include "passes/canonicalize.h"
#include "support/checked_size.h"
#include "support/content_hash.h"
#include "support/error.h"
#include "support/input_file.h"

namespace cb {

namespace {

constexpr int64_t kMinOnnxOpset = 1;
constexpr int kMaxFunctionDepth = 32;
constexpr int kFunctionAttributeProtoField = 11;  // FunctionProto.attribute_proto (onnx >= 1.13)

// ---------------------------------------------------------------------------
// Tensors

// Memory-maps external data files once per import.
class ExternalFiles {
 public:
  explicit ExternalFiles(std::string base_dir) : base_dir_(std::move(base_dir)) {}

  std::shared_ptr<MappedFile> open(const std::string& location, const std::string& what) {
    CB_CHECK(!location.empty(), what << ": external data has no 'location'");
    check_name_inside_folder(location, what + ": external data location", "the model's directory");
    std::string path = base_dir_.empty() ? location : base_dir_ + "/" + location;
    auto it = files_.find(path);
    if (it != files_.end()) return it->second;
    std::shared_ptr<MappedFile> f;
    try {
      f = MappedFile::open(path);
    } catch (const Error& e) {
      CB_FAIL(what << ": cannot read external data: " << e.what());
    }
    check_content_hash(*f, location);
    files_[path] = f;
    return f;
  }

 private:
  // A data file named "<model>.<hash>.data" (export_onnx) must hold the bytes
  // it was written with: a model paired with another export's data would
  // otherwise run with wrong weights.
  static void check_content_hash(const MappedFile& f, const std::string& location) {
    std::string name = location.substr(location.rfind('/') == std::string::npos ? 0 : location.rfind('/') + 1);
    std::optional<std::string> expected = external_data_hash(name);
    if (!expected) return;
    std::string actual = content_hash_hex(f.data(), f.size());
    CB_CHECK(actual == *expected, "external data file '" << f.path() << "' does not match the model that names it: "
                                                         << "its content hash is " << actual << ", not " << *expected
                                                         << " (a data file of another export copied over it?); "
                                                            "export the model again");
  }

  std::string base_dir_;
  std::map<std::string, std::shared_ptr<MappedFile>> files_;
};

// Bools must be 0 or 1 in memory; other nonzero bytes become 1.
void normalise_bools(uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; ++i) p[i] = p[i] != 0;
}

template <typename T, typename Src>
Tensor from_typed_field(DType dtype, const std::vector<int64_t>& dims, const Src& src) {
  Tensor t = Tensor::empty(dtype, dims);
  T* d = t.data<T>();
  for (int i = 0; i < src.size(); ++i) {
    if constexpr (std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>)
      d[i].bits = uint16_t(src[i]);
    else if constexpr (std::is_same_v<T, bool>)
      d[i] = src[i] != 0;
    else
      d[i] = static_cast<T>(src[i]);
  }
  return t;
}

Tensor from_external(onnx::TensorProto& tp, DType dtype, const std::vector<int64_t>& dims, size_t nbytes,
                     ExternalFiles& files, const std::string& what) {
  std::string location;
  int64_t offset = 0, length = -1;
  for (auto& kv : tp.external_data()) {
    try {
      if (kv.key() == "location")
        location = kv.value();
      else if (kv.key() == "offset")
        offset = std::stoll(kv.value());
      else if (kv.key() == "length")
        length = std::stoll(kv.value());
    } catch (const std::exception&) {
      CB_FAIL(what << ": bad external data " << kv.key() << " '" << kv.value() << "'");
    }
  }
  CB_CHECK(offset >= 0, what << ": negative external data offset " << offset);
  CB_CHECK(length < 0 || size_t(length) == nbytes, what << ": external data length " << length << " does not match its "
                                                        << dtype_name(dtype) << dims_str(dims) << " shape (" << nbytes
                                                        << " bytes)");
  auto file = files.open(location, what);
  CB_CHECK(size_t(offset) <= file->size() && nbytes <= file->size() - size_t(offset),
           what << ": external data [" << offset << ", " << uint64_t(offset) + nbytes << ") lies outside '"
                << file->path() << "' (" << file->size() << " bytes)");
  const uint8_t* p = file->data() + offset;
  bool aligned = reinterpret_cast<uintptr_t>(p) % dtype_size(dtype) == 0;
  bool clean = true;
  if (dtype == DType::boolean)
    for (size_t i = 0; i < nbytes && clean; ++i) clean = p[i] <= 1;
  if (aligned && clean) {
    auto buf = buffer_view(const_cast<uint8_t*>(p), nbytes, file);
    return Tensor::wrap(dtype, dims, std::move(buf));
  }
  // Rare: an unaligned offset or odd bool bytes.
  Tensor t = allocate_for(what, [&] { return Tensor::empty(dtype, dims); });
  if (nbytes) std::memcpy(t.raw(), p, nbytes);
  if (dtype == DType::boolean) normalise_bools(static_cast<uint8_t*>(t.raw()), nbytes);
  return t;
}

Tensor convert_tensor(onnx::TensorProto& tp, ExternalFiles& files, const std::string& what) {
  auto dtype = dtype_from_onnx(tp.data_type());
  CB_CHECK(tp.data_type() != 0, what << ": tensor has no element type");
  CB_CHECK(dtype, what << ": element type " << onnx_dtype_name(tp.data_type()) << " is not supported");
  CB_CHECK(!tp.has_segment(), what << ": segmented tensors are not supported");
  std::vector<int64_t> dims(tp.dims().begin(), tp.dims().end());
  const size_t nbytes = checked_nbytes(dims, dtype_size(*dtype), what);
  const int64_t numel = checked_numel(dims, what);

  if (tp.data_location() == onnx::TensorProto::EXTERNAL) return from_external(tp, *dtype, dims, nbytes, files, what);

  if (tp.has_raw_data()) {
    std::string& raw = *tp.mutable_raw_data();
    CB_CHECK(raw.size() == nbytes, what << ": raw_data has " << raw.size() << " bytes, but " << dtype_name(*dtype)
                                        << dims_str(dims) << " needs " << nbytes);
    if (*dtype == DType::boolean) normalise_bools(reinterpret_cast<uint8_t*>(raw.data()), nbytes);
    if (reinterpret_cast<uintptr_t>(raw.data()) % dtype_size(*dtype) != 0) {
      // Short strings may sit unaligned.
      Tensor t = allocate_for(what, [&] { return Tensor::empty(*dtype, dims); });
      if (nbytes) std::memcpy(t.raw(), raw.data(), nbytes);
      raw.clear();
      return t;
    }
    return Tensor::wrap(*dtype, dims, buffer_from_string(std::move(raw)));
  }

  auto check_count = [&](int have, const char* field) {
    CB_CHECK(have == numel, what << ": " << field << " has " << have << " values, but " << dtype_name(*dtype)
                                 << dims_str(dims) << " needs " << numel);
  };
  switch (*dtype) {
    case DType::f32:
      check_count(tp.float_data_size(), "float_data");
      return from_typed_field<float>(*dtype, dims, tp.float_data());
    case DType::f64:
      check_count(tp.double_data_size(), "double_data");
      return from_typed_field<double>(*dtype, dims, tp.double_data());
    case DType::i64:
      check_count(tp.int64_data_size(), "int64_data");
      return from_typed_field<int64_t>(*dtype, dims, tp.int64_data());
    case DType::u64:
      check_count(tp.uint64_data_size(), "uint64_data");
      return from_typed_field<uint64_t>(*dtype, dims, tp.uint64_data());
    case DType::u32:
      check_count(tp.uint64_data_size(), "uint64_data");
      return from_typed_field<uint32_t>(*dtype, dims, tp.uint64_data());
    default: break;
  }
  check_count(tp.int32_data_size(), "int32_data");
  return dtype_dispatch(*dtype,
                        [&](auto tag) { return from_typed_field<decltype(tag)>(*dtype, dims, tp.int32_data()); });
}

// ---------------------------------------------------------------------------
// Types

// "sequence", "map", ... for values that are not tensors.
std::string non_tensor_kind(const onnx::TypeProto& t) {
  if (t.has_sequence_type()) return "sequence";
  if (t.has_map_type()) return "map";
  if (t.has_optional_type()) return "optional";
  if (t.has_sparse_tensor_type()) return "sparse tensor";
  return "unknown";
}

TensorType convert_type(const onnx::TypeProto& t, const std::string& value_name, bool name_unknown_dims) {
  CB_CHECK(t.value_case() == onnx::TypeProto::VALUE_NOT_SET || t.has_tensor_type(),
           "value '" << value_name << "' has a " << non_tensor_kind(t) << " type; only tensors are supported");
  TensorType out;
  if (!t.has_tensor_type()) return out;
  const auto& tt = t.tensor_type();
  if (tt.elem_type() != 0) {
    auto d = dtype_from_onnx(tt.elem_type());
    CB_CHECK(d, "value '" << value_name << "' has element type " << onnx_dtype_name(tt.elem_type())
                          << ", which is not supported");
    out.dtype = *d;
  }
  if (!tt.has_shape()) return out;
  out.shape = Shape();
  // The static dims of a declared shape must multiply to a size a tensor can have.
  int64_t static_numel = 1;
  for (const auto& d : tt.shape().dim())
    CB_CHECK(!d.has_dim_value() || d.dim_value() < 0 || mul_size(static_numel, d.dim_value()),
             "value '" << value_name << "' is declared with a shape of more than 2^62 elements");
  for (int i = 0; i < tt.shape().dim_size(); ++i) {
    const auto& d = tt.shape().dim(i);
    if (d.has_dim_value() && d.dim_value() >= 0)
      out.shape.dims.push_back(Dim::fixed(d.dim_value()));
    else if (d.has_dim_param() && !d.dim_param().empty())
      out.shape.dims.push_back(Dim::sym(d.dim_param()));
    else if (name_unknown_dims)
      out.shape.dims.push_back(Dim::sym(value_name + "_dim" + std::to_string(i)));
    else
      out.shape.dims.push_back(Dim::unknown());
  }
  return out;
}

// A graph input of the model is fed by the caller: it needs an element type
// (UNDEFINED would accept any tensor and leave every consumer untyped).
void check_graph_input_type(const onnx::ValueInfoProto& vi) {
  const std::string what = "graph input '" + vi.name() + "'";
  CB_CHECK(vi.type().value_case() != onnx::TypeProto::VALUE_NOT_SET, what << " has no type");
  if (!vi.type().has_tensor_type()) return;  // sequences, maps, ...: convert_type names them
  CB_CHECK(vi.type().tensor_type().elem_type() != onnx::TensorProto::UNDEFINED,
           what << " has element type UNDEFINED; a graph input must declare its element type");
}

// Fills what `inferred` knows and `declared` does not (like infer_types does).
void merge_inferred(Value& v, const TensorType& inferred) {
  if (v.type.dtype == DType::undefined) v.type.dtype = inferred.dtype;
  if (!v.type.shape.rank_known) {
    v.type.shape = inferred.shape;
  } else if (inferred.shape.rank_known && inferred.shape.rank() == v.type.shape.rank()) {
    for (size_t i = 0; i < v.type.shape.rank(); ++i)
      if (v.type.shape.dims[i].is_unknown()) v.type.shape.dims[i] = inferred.shape.dims[i];
  }
}

std::string attr_type_name(int t) {
  return onnx::AttributeProto::AttributeType_IsValid(t)
             ? onnx::AttributeProto::AttributeType_Name(onnx::AttributeProto::AttributeType(t))
             : "type#" + std::to_string(t);
}

// Old models sometimes leave AttributeProto.type unset; guess it from the fields.
onnx::AttributeProto::AttributeType attr_type(const onnx::AttributeProto& a) {
  using A = onnx::AttributeProto;
  if (a.type() != A::UNDEFINED) return a.type();
  if (a.has_f()) return A::FLOAT;
  if (a.has_i()) return A::INT;
  if (a.has_s()) return A::STRING;
  if (a.has_t()) return A::TENSOR;
  if (a.has_g()) return A::GRAPH;
  if (a.floats_size()) return A::FLOATS;
  if (a.ints_size()) return A::INTS;
  if (a.strings_size()) return A::STRINGS;
  if (a.tensors_size()) return A::TENSORS;
  if (a.graphs_size()) return A::GRAPHS;
  return A::UNDEFINED;
}

// ---------------------------------------------------------------------------
// Graph construction

// Per-graph state: the graph, the model's value and node names in it (value
// names are reserved so that helper values never take them) and the node
// names used so far.
struct GraphState {
  Graph* g = nullptr;
  std::unordered_set<std::string> reserved;
  std::unordered_set<std::string> onnx_node_names;
  std::unordered_set<std::string> used_node_names;
  bool is_main = false;

  std::string fresh_value_name(const std::string& base) const {
    std::string n = base;
    for (int k = 1; reserved.count(n) || g->find_value(n); ++k) n = base + "_" + std::to_string(k);
    return n;
  }
  // A node name from the model keeps its name unless it was used already;
  // generated names avoid every name of the model.
  std::string unique_node_name(const std::string& base, bool from_model = false) {
    std::string n = base;
    if (!from_model || used_node_names.count(n))
      for (int k = 1; used_node_names.count(n) || onnx_node_names.count(n); ++k) n = base + "_" + std::to_string(k);
    used_node_names.insert(n);
    return n;
  }
};

// Names visible to a node: this graph's (or function body's) values, then the
// enclosing graphs' (for subgraphs). A null Value* is an omitted function input.
struct Scope {
  GraphState* gs = nullptr;
  const Scope* parent = nullptr;
  std::unordered_map<std::string, Value*> names;

  bool lookup(const std::string& n, Value** out) const {
    for (const Scope* s = this; s; s = s->parent) {
      auto it = s->names.find(n);
      if (it != s->names.end()) {
        *out = it->second;
        return true;
      }
    }
    return false;
  }
};

// Opset versions in effect (the model's, or a function's own).
using Opsets = std::map<std::string, int64_t>;

// An inlined function call: the attributes of the call site (after its own
// ref_attr_name resolution) plus the function's defaults, and where its
// formal outputs go.
struct FunctionFrame {
  std::string prefix;  // call node's name
  std::map<std::string, onnx::AttributeProto> attrs;
  std::unordered_map<std::string, Value*> output_binding;
  int depth = 0;
};

struct FunctionInfo {
  const onnx::FunctionProto* proto = nullptr;
  std::map<std::string, onnx::AttributeProto> defaults;
  Opsets opsets;
};

// The length-delimited fields numbered `field` among a lite message's unknown
// fields (for proto fields newer than the onnx.proto we compile).
std::vector<std::string> unknown_length_delimited(const std::string& unknown, int field) {
  using google::protobuf::internal::WireFormatLite;
  google::protobuf::io::CodedInputStream in(reinterpret_cast<const uint8_t*>(unknown.data()), int(unknown.size()));
  std::vector<std::string> out;
  for (uint32_t tag; (tag = in.ReadTag()) != 0;) {
    if (WireFormatLite::GetTagFieldNumber(tag) == field &&
        WireFormatLite::GetTagWireType(tag) == WireFormatLite::WIRETYPE_LENGTH_DELIMITED) {
      uint32_t len = 0;
      std::string s;
      if (!in.ReadVarint32(&len) || !in.ReadString(&s, int(len))) break;
      out.push_back(std::move(s));
    } else if (!WireFormatLite::SkipField(&in, tag)) {
      break;
    }
  }
  return out;
}

std::string node_label(const onnx::NodeProto& np, const std::string& name) {
  std::string d = np.domain().empty() || np.domain() == "ai.onnx" ? np.op_type() : np.domain() + "." + np.op_type();
  return d + " '" + name + "'";
}

class Importer : public UpgradeSink {
 public:
  Importer(std::string base_dir, ImportOptions opts) : files_(std::move(base_dir)), opts_(opts) {}

  std::shared_ptr<Graph> run(onnx::ModelProto& model);

  // UpgradeSink: helper values of the node being upgraded.
  Value* constant(const std::string& base, Tensor t) override {
    return cur_->g->add_constant(cur_->fresh_value_name(base), std::move(t));
  }
  Value* intermediate(const std::string& base) override { return cur_->g->add_value(cur_->fresh_value_name(base)); }

 private:
  void build_graph(onnx::GraphProto& gp, GraphState& gs, Scope& scope, const Opsets& opsets);
  std::vector<int> node_order(const onnx::GraphProto& gp);
  void import_node(onnx::NodeProto& np, Scope& scope, const Opsets& opsets, const FunctionFrame* frame, bool may_steal);
  void import_constant(onnx::NodeProto& np, const std::string& name, Scope& scope,
                       const std::map<std::string, AttrValue>& attrs, const FunctionFrame* frame);
  void inline_function(const FunctionInfo& fn, onnx::NodeProto& np, const std::string& name, std::vector<Value*> inputs,
                       Scope& scope, const FunctionFrame* frame);
  AttrValue convert_attr(onnx::AttributeProto& a, const std::string& label, Scope& scope, const Opsets& opsets,
                         bool may_steal);
  Value* define_output(const std::string& onnx_name, Scope& scope, const FunctionFrame* frame,
                       const std::string& label);
  void add_checked_node(NodeDraft d, int64_t opset);
  void infer_now(const Node& n);

  ExternalFiles files_;
  ImportOptions opts_;
  std::map<std::pair<std::string, std::string>, FunctionInfo> functions_;  // (domain, name)
  std::unordered_map<std::string, const onnx::TypeProto*> declared_;       // this graph's value_info
  GraphState* cur_ = nullptr;
  int64_t unnamed_nodes_ = 0;
};

std::shared_ptr<Graph> Importer::run(onnx::ModelProto& model) {
  auto g = std::make_shared<Graph>();
  Opsets opsets;
  for (auto& o : model.opset_import()) {
    std::string dom = o.domain() == "ai.onnx" ? "" : o.domain();
    opsets[dom] = o.version();
    g->opsets[dom] = o.version();
  }
  if (!opsets.count("") && model.opset_import_size() == 0) opsets[""] = g->opsets[""] = 1;
  if (opsets.count("")) {
    int64_t v = opsets[""];
    CB_CHECK(v >= kMinOnnxOpset && v <= kMaxOnnxOpset, "ai.onnx opset "
                                                           << v << " is not supported (supported: " << kMinOnnxOpset
                                                           << ".." << kMaxOnnxOpset << ")");
  }
  g->ir_version = model.ir_version();
  g->producer = model.producer_name();
  for (auto& kv : model.metadata_props()) g->metadata[kv.key()] = kv.value();
  if (!model.graph().name().empty()) g->name = model.graph().name();

  for (auto& f : model.functions()) {
    FunctionInfo info;
    info.proto = &f;
    info.opsets = opsets;
    for (auto& o : f.opset_import()) info.opsets[o.domain() == "ai.onnx" ? "" : o.domain()] = o.version();
    for (const std::string& bytes : unknown_length_delimited(f.unknown_fields(), kFunctionAttributeProtoField)) {
      onnx::AttributeProto a;
      CB_CHECK(a.ParseFromString(bytes), "function '" << f.name() << "': bad default attribute");
      info.defaults[a.name()] = a;
    }
    functions_[{f.domain() == "ai.onnx" ? "" : f.domain(), f.name()}] = std::move(info);
  }

  GraphState gs;
  gs.g = g.get();
  gs.is_main = true;
  Scope scope;
  scope.gs = &gs;
  build_graph(*model.mutable_graph(), gs, scope, opsets);
  return g;
}

// Node indices in a valid execution order: the file's order when it already is
// one (the usual case), else a topological sort.
std::vector<int> Importer::node_order(const onnx::GraphProto& gp) {
  int n = gp.node_size();
  std::unordered_map<std::string, int> producer;
  for (int i = 0; i < n; ++i)
    for (auto& o : gp.node(i).output())
      if (!o.empty()) producer.emplace(o, i);
  bool in_order = true;
  for (int i = 0; i < n && in_order; ++i)
    for (auto& in : gp.node(i).input()) {
      auto it = producer.find(in);
      if (it != producer.end() && it->second >= i) in_order = false;
    }
  std::vector<int> order;
  order.reserve(size_t(n));
  if (in_order) {
    for (int i = 0; i < n; ++i) order.push_back(i);
    return order;
  }
  std::vector<int> state(size_t(n), 0);
  std::function<void(int)> visit = [&](int i) {
    if (state[size_t(i)] == 2) return;
    CB_CHECK(state[size_t(i)] != 1,
             "the graph has a cycle through node '" << gp.node(i).name() << "' (" << gp.node(i).op_type() << ")");
    state[size_t(i)] = 1;
    for (auto& in : gp.node(i).input()) {
      auto it = producer.find(in);
      if (it != producer.end()) visit(it->second);
    }
    state[size_t(i)] = 2;
    order.push_back(i);
  };
  for (int i = 0; i < n; ++i) visit(i);
  return order;
}

void Importer::build_graph(onnx::GraphProto& gp, GraphState& gs, Scope& scope, const Opsets& opsets) {
  GraphState* saved = cur_;
  cur_ = &gs;
  Graph& g = *gs.g;
  for (auto& t : gp.initializer()) gs.reserved.insert(t.name());
  for (auto& v : gp.input()) gs.reserved.insert(v.name());
  for (auto& v : gp.output()) gs.reserved.insert(v.name());
  for (auto& nd : gp.node())
    for (auto& o : nd.output()) gs.reserved.insert(o);
  for (auto& nd : gp.node())
    if (!nd.name().empty()) gs.onnx_node_names.insert(nd.name());

  CB_CHECK(gp.sparse_initializer_size() == 0, "sparse initializers are not supported");
  for (auto& tp : *gp.mutable_initializer()) {
    CB_CHECK(!tp.name().empty(), "an initializer has no name");
    CB_CHECK(!scope.names.count(tp.name()), "initializer '" << tp.name() << "' is defined twice");
    std::string name = tp.name();
    Tensor t = convert_tensor(tp, files_, "initializer '" + name + "'");
    scope.names[name] = g.add_constant(name, std::move(t));
  }
  for (auto& vi : gp.input()) {
    if (scope.names.count(vi.name())) continue;  // an initializer: a constant with a default
    CB_CHECK(!vi.name().empty(), "a graph input has no name");
    if (gs.is_main) check_graph_input_type(vi);
    TensorType t = convert_type(vi.type(), vi.name(), gs.is_main && opts_.name_unknown_input_dims);
    scope.names[vi.name()] = g.add_input(vi.name(), t);
  }

  std::unordered_map<std::string, const onnx::TypeProto*> declared;
  for (auto& vi : gp.value_info()) declared[vi.name()] = &vi.type();
  for (auto& vi : gp.output()) declared[vi.name()] = &vi.type();
  auto saved_declared = std::move(declared_);
  declared_ = std::move(declared);

  for (int i : node_order(gp)) {
    cur_ = &gs;
    import_node(*gp.mutable_node(i), scope, opsets, nullptr, true);
  }
  cur_ = &gs;

  for (auto& vi : gp.output()) {
    Value* v = nullptr;
    bool found =
        gs.is_main ? scope.names.count(vi.name()) && (v = scope.names[vi.name()]) : scope.lookup(vi.name(), &v) && v;
    CB_CHECK(found, "graph output '" << vi.name() << "' is not computed by any node");
    TensorType declared_type = convert_type(vi.type(), vi.name(), false);
    if (v->type.dtype == DType::undefined && !v->type.shape.rank_known) v->type = declared_type;
    g.outputs.push_back(v);
  }
  declared_ = std::move(saved_declared);
  cur_ = saved;
}

Value* Importer::define_output(const std::string& onnx_name, Scope& scope, const FunctionFrame* frame,
                               const std::string& label) {
  CB_CHECK(!scope.names.count(onnx_name), label << ": value '" << onnx_name << "' is produced twice");
  Value* v = nullptr;
  if (frame) {
    auto it = frame->output_binding.find(onnx_name);
    if (it != frame->output_binding.end() && it->second)
      v = it->second;
    else
      v = cur_->g->add_value(cur_->fresh_value_name(frame->prefix + "/" + onnx_name));
  } else {
    TensorType t;
    auto it = declared_.find(onnx_name);
    if (it != declared_.end()) t = convert_type(*it->second, onnx_name, false);
    v = cur_->g->add_value(onnx_name, t);
  }
  scope.names[onnx_name] = v;
  return v;
}

AttrValue Importer::convert_attr(onnx::AttributeProto& a, const std::string& label, Scope& scope, const Opsets& opsets,
                                 bool may_steal) {
  using A = onnx::AttributeProto;
  auto type = attr_type(a);
  switch (type) {
    case A::FLOAT: return a.f();
    case A::INT: return a.i();
    case A::STRING: return a.s();
    case A::INTS: return std::vector<int64_t>(a.ints().begin(), a.ints().end());
    case A::FLOATS: return std::vector<float>(a.floats().begin(), a.floats().end());
    case A::STRINGS: return std::vector<std::string>(a.strings().begin(), a.strings().end());
    case A::TENSOR: {
      std::string what = label + ": attribute '" + a.name() + "'";
      if (may_steal) return convert_tensor(*a.mutable_t(), files_, what);
      onnx::TensorProto copy = a.t();
      return convert_tensor(copy, files_, what);
    }
    case A::GRAPH: {
      auto sub = std::make_shared<Graph>();
      sub->name = a.g().name().empty() ? a.name() : a.g().name();
      sub->opsets = cur_->g->opsets;
      GraphState gs;
      gs.g = sub.get();
      Scope inner;
      inner.gs = &gs;
      inner.parent = &scope;
      GraphState* saved = cur_;
      onnx::GraphProto copy;
      onnx::GraphProto* gp = a.mutable_g();
      if (!may_steal) {
        copy = a.g();
        gp = &copy;
      }
      try {
        build_graph(*gp, gs, inner, opsets);
      } catch (const Error& e) {
        cur_ = saved;
        CB_FAIL(label << ": in subgraph '" << a.name() << "': " << e.what());
      }
      cur_ = saved;
      return sub;
    }
    default:
      CB_FAIL(label << ": attribute '" << a.name() << "' has type " << attr_type_name(type)
                    << ", which is not supported");
  }
}

void Importer::import_constant(onnx::NodeProto& np, const std::string& label, Scope& scope,
                               const std::map<std::string, AttrValue>& attrs, const FunctionFrame* frame) {
  CB_CHECK(np.output_size() == 1 && !np.output(0).empty(), label << ": expected one output");
  CB_CHECK(attrs.size() == 1, label << ": expected exactly one attribute, got " << attrs.size());
  const auto& [key, val] = *attrs.begin();
  auto get = [&, &key = key, &val = val](auto tag) -> const decltype(tag)& {
    auto* v = std::get_if<decltype(tag)>(&val);
    CB_CHECK(v, label << ": attribute '" << key << "' has the wrong type");
    return *v;
  };
  Tensor t;
  if (key == "value") {
    t = get(Tensor{});
  } else if (key == "value_float") {
    t = Tensor::scalar<float>(get(float{}));
  } else if (key == "value_int") {
    t = Tensor::scalar<int64_t>(get(int64_t{}));
  } else if (key == "value_floats") {
    auto& v = get(std::vector<float>{});
    t = Tensor::from_vector<float>(v, {int64_t(v.size())});
  } else if (key == "value_ints") {
    auto& v = get(std::vector<int64_t>{});
    t = Tensor::from_vector<int64_t>(v, {int64_t(v.size())});
  } else {
    CB_FAIL(label << ": attribute '" << key << "' is not supported (string and sparse constants)");
  }
  const std::string& out = np.output(0);
  CB_CHECK(!scope.names.count(out), label << ": value '" << out << "' is produced twice");
  std::string name = frame ? cur_->fresh_value_name(frame->prefix + "/" + out) : out;
  Value* v = cur_->g->add_constant(name, std::move(t));
  if (frame) {
    // A constant bound to a formal output: route it through Identity.
    auto it = frame->output_binding.find(out);
    if (it != frame->output_binding.end() && it->second) {
      scope.names[out] = it->second;
      add_checked_node(NodeDraft{"Identity", "", cur_->unique_node_name(name), {v}, {it->second}, {}}, 0);
      return;
    }
  }
  scope.names[out] = v;
}

void Importer::infer_now(const Node& n) {
  std::vector<const TensorType*> types;
  std::vector<const Tensor*> values;
  for (Value* v : n.inputs) {
    types.push_back(v ? &v->type : nullptr);
    values.push_back(v && v->constant ? &*v->constant : nullptr);
  }
  std::vector<TensorType> out = infer_node(n, types, values);
  for (size_t i = 0; i < n.outputs.size() && i < out.size(); ++i)
    if (n.outputs[i]) merge_inferred(*n.outputs[i], out[i]);
}

void Importer::add_checked_node(NodeDraft d, int64_t opset) {
  const OpSchema* s = OpRegistry::global().find(d.domain, d.op_type);
  if (!s) {
    std::string op = d.domain.empty() ? d.op_type : d.domain + "." + d.op_type;
    if (d.domain.empty()) CB_FAIL("unsupported op " << op << " (node '" << d.name << "', opset " << opset << ")");
    CB_FAIL("unsupported op " << op << " (node '" << d.name << "')");
  }
  Node* n =
      cur_->g->add_node(d.op_type, std::move(d.inputs), std::move(d.outputs), std::move(d.attrs), d.name, d.domain);
  infer_now(*n);
}

void Importer::import_node(onnx::NodeProto& np, Scope& scope, const Opsets& opsets, const FunctionFrame* frame,
                           bool may_steal) {
  std::string base = np.name().empty() ? np.op_type() + "_" + std::to_string(unnamed_nodes_++) : np.name();
  if (frame) base = frame->prefix + "/" + base;
  std::string name = cur_->unique_node_name(base, !np.name().empty() && !frame);
  std::string label = node_label(np, name);
  std::string domain = np.domain() == "ai.onnx" ? "" : np.domain();

  std::vector<Value*> inputs;
  for (auto& in : np.input()) {
    Value* v = nullptr;
    if (!in.empty())
      CB_CHECK(scope.lookup(in, &v), label << ": input '" << in
                                           << "' is not defined (not a graph input, an "
                                              "initializer or an output of an earlier node)");
    inputs.push_back(v);
  }

  auto fn = functions_.find({domain, np.op_type()});
  if (fn != functions_.end()) {
    inline_function(fn->second, np, name, std::move(inputs), scope, frame);
    return;
  }

  // Attributes, with ref_attr_name resolved against the enclosing function call.
  std::map<std::string, AttrValue> attrs;
  for (auto& a : *np.mutable_attribute()) {
    if (!a.ref_attr_name().empty()) {
      CB_CHECK(frame, label << ": attribute '" << a.name() << "' refers to a function attribute outside a function");
      auto it = frame->attrs.find(a.ref_attr_name());
      if (it == frame->attrs.end()) continue;  // not given and no default: absent
      onnx::AttributeProto resolved = it->second;
      resolved.set_name(a.name());
      attrs[a.name()] = convert_attr(resolved, label, scope, opsets, true);
      continue;
    }
    attrs[a.name()] = convert_attr(a, label, scope, opsets, may_steal);
  }

  int64_t opset = 0;
  if (domain.empty()) {
    auto it = opsets.find("");
    CB_CHECK(it != opsets.end(), label << ": the model does not import the ai.onnx opset");
    opset = it->second;
    if (np.op_type() == "Constant") {
      import_constant(np, label, scope, attrs, frame);
      return;
    }
  } else if (!OpRegistry::global().find(domain, np.op_type())) {
    CB_FAIL("unsupported op " << np.op_type() << " of domain '" << domain << "' (node '" << name << "')");
  }

  std::vector<Value*> outputs;
  for (auto& o : np.output()) outputs.push_back(o.empty() ? nullptr : define_output(o, scope, frame, label));
  while (!outputs.empty() && !outputs.back()) outputs.pop_back();

  NodeDraft d{np.op_type(), domain, name, std::move(inputs), std::move(outputs), std::move(attrs)};
  if (!domain.empty()) {
    add_checked_node(std::move(d), 0);
    return;
  }
  for (NodeDraft& part : upgrade_onnx_node(std::move(d), opset, *this)) {
    if (part.name != name) part.name = cur_->unique_node_name(part.name);
    add_checked_node(std::move(part), opset);
  }
}

void Importer::inline_function(const FunctionInfo& fn, onnx::NodeProto& np, const std::string& name,
                               std::vector<Value*> inputs, Scope& scope, const FunctionFrame* caller) {
  const onnx::FunctionProto& f = *fn.proto;
  std::string label = node_label(np, name);
  int depth = caller ? caller->depth + 1 : 1;
  CB_CHECK(depth <= kMaxFunctionDepth,
           label << ": functions nested more than " << kMaxFunctionDepth << " deep (recursive?)");
  CB_CHECK(int(inputs.size()) <= f.input_size(),
           label << ": " << inputs.size() << " inputs, but function '" << f.name() << "' takes " << f.input_size());
  CB_CHECK(np.output_size() <= f.output_size(),
           label << ": " << np.output_size() << " outputs, but function '" << f.name() << "' has " << f.output_size());

  FunctionFrame frame;
  frame.prefix = name;
  frame.depth = depth;
  frame.attrs = fn.defaults;
  for (auto& a : np.attribute()) {
    if (a.ref_attr_name().empty()) {
      frame.attrs[a.name()] = a;
      continue;
    }
    CB_CHECK(caller, label << ": attribute '" << a.name()
                           << "' refers to a function attribute "
                              "outside a function");
    auto it = caller->attrs.find(a.ref_attr_name());
    if (it == caller->attrs.end()) continue;
    onnx::AttributeProto resolved = it->second;
    resolved.set_name(a.name());
    frame.attrs[a.name()] = resolved;
  }

  Scope body;
  body.gs = scope.gs;
  for (int i = 0; i < f.input_size(); ++i)
    body.names[f.input(i)] = i < int(inputs.size()) ? inputs[size_t(i)] : nullptr;
  std::vector<Value*> actual_outputs;
  for (int i = 0; i < np.output_size(); ++i) {
    Value* v = np.output(i).empty() ? nullptr : define_output(np.output(i), scope, caller, label);
    actual_outputs.push_back(v);
    if (v) frame.output_binding[f.output(i)] = v;
  }

  GraphState* saved = cur_;
  try {
    for (auto& nd : f.node()) {
      cur_ = saved;
      import_node(const_cast<onnx::NodeProto&>(nd), body, fn.opsets, &frame, false);
    }
  } catch (const Error& e) {
    cur_ = saved;
    CB_FAIL(label << ": in function '" << f.name() << "': " << e.what());
  }
  cur_ = saved;
  // Formal outputs that are not produced by a body node (e.g. an input passed through).
  for (size_t i = 0; i < actual_outputs.size(); ++i) {
    Value* out = actual_outputs[i];
    if (!out || out->producer) continue;
    Value* src = nullptr;
    CB_CHECK(body.lookup(f.output(int(i)), &src) && src,
             label << ": function '" << f.name() << "' does not compute its output '" << f.output(int(i)) << "'");
    add_checked_node(NodeDraft{"Identity", "", cur_->unique_node_name(name + "/" + f.output(int(i))), {src}, {out}, {}},
                     0);
  }
}

void check_model_basics(const onnx::ModelProto& m, const std::string& what) {
  CB_CHECK(m.has_graph(), "'" << what << "' is not a valid ONNX model: it has no graph");
  CB_CHECK(m.graph().output_size() > 0, "'" << what << "' is not a valid ONNX model: its graph is empty (no outputs)");
}

std::string dir_of(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

}  // namespace

Tensor tensor_from_onnx(onnx::TensorProto& tp, const std::string& base_dir, const std::string& what) {
  ExternalFiles files(base_dir);
  return convert_tensor(tp, files, what);
}

std::shared_ptr<Graph> import_onnx_model(onnx::ModelProto& model, const std::string& base_dir, const std::string& what,
                                         const ImportOptions& opts) {
  check_model_basics(model, what);
  std::shared_ptr<Graph> g;
  try {
    Importer imp(base_dir, opts);
    g = imp.run(model);
    g->remove_unused_values();
    infer_types(*g);
    verify_graph(*g);
    if (opts.canonicalize) canonicalize(*g);
  } catch (const Error& e) {
    throw Error("'" + what + "': " + e.what());
  }
  return g;
}

std::shared_ptr<Graph> import_onnx_bytes(const std::string& bytes, const std::string& base_dir, const std::string& what,
                                         const ImportOptions& opts) {
  onnx::ModelProto model;
  CB_CHECK(bytes.size() <= size_t(INT_MAX),
           "'" << what << "' is larger than 2 GB; such models must keep weights as external data");
  CB_CHECK(model.ParseFromArray(bytes.data(), int(bytes.size())),
           "'" << what
               << "' is not a valid ONNX model: the protobuf cannot be parsed "
                  "(truncated or not an ONNX file)");
  return import_onnx_model(model, base_dir, what, opts);
}

std::shared_ptr<Graph> import_onnx(const std::string& path, const ImportOptions& opts) {
  auto file = MappedFile::open(path);
  CB_CHECK(file->size() <= size_t(INT_MAX),
           "'" << path << "' is larger than 2 GB; such models must keep weights as external data");
  onnx::ModelProto model;
  CB_CHECK(file->size() > 0, "'" << path << "' is not a valid ONNX model: the file is empty");
  // One sequential pass over the file: prefault it instead of faulting page by page.
  void* start = const_cast<uint8_t*>(file->data());
  madvise(start, file->size(), MADV_SEQUENTIAL);
#ifdef MADV_POPULATE_READ
  madvise(start, file->size(), MADV_POPULATE_READ);
#endif
  CB_CHECK(model.ParseFromArray(file->data(), int(file->size())),
           "'" << path
               << "' is not a valid ONNX model: the protobuf cannot be parsed "
                  "(truncated or not an ONNX file)");
  file.reset();  // every byte we keep now lives in the parsed message
  return import_onnx_model(model, dir_of(path), path, opts);
}

}  // namespace cb
