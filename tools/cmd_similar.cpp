// codebook similar MODEL SITE[g] CODE: the codes most similar to one code
// (cosine of the code vectors) and the code's direct effect on the logits
// (tools/code_effects.h; docs/analysis.md).
#include <boost/program_options.hpp>
#include <iomanip>
#include <iostream>
#include <optional>
#include <sstream>

#include "ir/codebook.h"
#include "support/error.h"
#include "support/json.h"
#include "tools/code_effects.h"
#include "tools/command.h"
#include "tools/model_io.h"
#include "tools/option_checks.h"
#include "tools/options.h"
#include "tools/text_io.h"

namespace po = boost::program_options;

namespace cb::tools {

namespace {

constexpr int64_t kEffectTokens = 10;  // promoted and suppressed tokens shown

const char* kDescription =
    "\nPrints the N codes of the same codebook (member) whose vectors have the highest cosine similarity with\n"
    "CODE, and CODE's direct effect on the logits, as Neuronpedia's feature dashboards show it: the vector the\n"
    "code writes into the residual stream times the final LayerNorm's scale and the unembedding (the\n"
    "LayerNorm's normalisation and bias ignored), top 10 promoted and suppressed tokens. It is the effect of\n"
    "the whole code vector; a codebook outputs the mean of its k codes, so one selected code adds 1/k of it.\n"
    "attn_preproj and mlp_mid codes go through the output projection; qkv codes have no direct effect.\n"
    "docs/analysis.md has the details.\n";

// Token strings when a tokenizer is known; ids alone otherwise.
std::optional<TokenText> tokenizer_of(const po::variables_map& vm, const std::string& model_arg, const Graph& g) {
  auto meta = g.metadata.find(kTokenizerMetadataKey);
  std::optional<std::string> spec = vm.count("tokenizer")
                                        ? vm["tokenizer"].as<std::string>()
                                        : recorded_tokenizer(model_arg, meta == g.metadata.end() ? "" : meta->second);
  if (!spec) return std::nullopt;
  try {
    return TokenText::load(*spec);
  } catch (const Error& e) {
    if (vm.count("tokenizer")) throw;
    std::cerr << "note: token strings not shown: " << e.what() << "\n";
    return std::nullopt;
  }
}

std::string fixed(double v, int digits) {
  std::ostringstream o;
  o << std::fixed << std::setprecision(digits) << v;
  return o.str();
}

void print_tokens(const char* what, const std::vector<TokenLogit>& tokens, const TokenText* text) {
  std::cout << "  " << what << ":\n";
  for (const TokenLogit& t : tokens) {
    std::cout << "    " << std::setw(9) << fixed(t.logit, 4) << "  " << std::setw(6) << t.token;
    if (text) std::cout << "  " << text->shown(t.token);
    std::cout << "\n";
  }
}

Json json_tokens(const std::vector<TokenLogit>& tokens, const TokenText* text) {
  Json::Array out;
  for (const TokenLogit& t : tokens) {
    Json::Object o{{"token", Json(t.token)}, {"logit", Json(t.logit)}};
    o["text"] = text ? json_parse(text->json(t.token)) : Json();
    out.push_back(Json(std::move(o)));
  }
  return Json(std::move(out));
}

}  // namespace

int cmd_similar(int argc, char** argv) {
  po::options_description opts("usage: codebook similar MODEL SITE[g] CODE [options]\n\noptions");
  opts.add_options()("n,n", po::value<int64_t>()->default_value(8)->notifier(must_be_non_negative("-n")),
                     "how many similar codes to show")(
      "tokenizer", po::value<std::string>(),
      "DIR (GPT-2 BPE) or tokfsm[:BASE] for token strings; default: the one the model or its training run records")(
      "json", "print one JSON object");
  po::variables_map vm;
  if (!parse_command_line_list(argc, argv, opts, "args", "MODEL SITE[g] CODE", vm, kDescription)) return 0;
  const std::vector<std::string> args =
      vm.count("args") ? vm["args"].as<std::vector<std::string>>() : std::vector<std::string>{};
  CB_CHECK(args.size() == 3,
           "expected MODEL SITE[g] CODE (e.g. codebook similar cb.onnx layer0.attn_preproj[3] 17), got "
               << args.size() << " arguments");
  const int64_t n = vm["n"].as<int64_t>();

  const std::string model_arg = args[0];
  LoadedModel m = load_model(resolve_model_path(model_arg));
  CodeEffects effects(*m.graph);
  SiteRef s = parse_site(args[1], int64_t(effects.anatomy().layers.size()));
  const int64_t code = parse_int(args[2], "code");
  const int64_t member = effects.member(s);
  effects.check_code(s, code);
  const Node& node = effects.codebook(s);
  const Shape& shape = node.input(1)->type.shape;
  const int64_t G = shape.dims[0].value, K = shape.dims[1].value, Dg = shape.dims[2].value;
  const int64_t k = CodebookAttrs::from_node(node).k;
  // The member named in full, so "layer0.mlp 3" and "layer0.mlp[0] 3" print the same.
  SiteRef named = s;
  named.group = G > 1 ? member : kAll;

  std::vector<SimilarCode> similar = effects.similar(s, code, n);
  LogitEffect effect = effects.logit_effect(s, code, kEffectTokens);
  std::optional<TokenText> text = tokenizer_of(vm, model_arg, *m.graph);
  const TokenText* t = text ? &*text : nullptr;

  if (vm.count("json")) {
    Json::Array sim;
    for (const SimilarCode& c : similar)
      sim.push_back(Json(Json::Object{{"code", Json(c.code)}, {"cosine", Json(c.cosine)}}));
    Json::Object eff{{"available", Json(effect.available)}};
    if (effect.available) {
      eff["promoted"] = json_tokens(effect.promoted, t);
      eff["suppressed"] = json_tokens(effect.suppressed, t);
    } else {
      eff["reason"] = Json(effect.reason);
    }
    Json out(Json::Object{{"site", Json(named.name())},
                          {"member", Json(member)},
                          {"code", Json(code)},
                          {"num_codes", Json(K)},
                          {"k", Json(k)},
                          {"similar", Json(std::move(sim))},
                          {"logit_effect", Json(std::move(eff))}});
    std::cout << out.dump() << "\n";
    return 0;
  }

  std::cout << named.name() << " code " << code << " (" << K << " codes of width " << Dg << ", k = " << k
            << (G > 1 ? ", member " + std::to_string(member) + " of " + std::to_string(G) : "") << ")\n";
  std::cout << similar.size() << " most similar codes (cosine of the code vectors):\n";
  for (const SimilarCode& c : similar)
    std::cout << "  " << std::setw(6) << c.code << "  " << fixed(c.cosine, 4) << "\n";
  if (!effect.available) {
    std::cout << "direct effect on the logits: not available (" << effect.reason << ")\n";
    return 0;
  }
  std::cout << "direct effect on the logits of the whole code vector (-> residual stream -> final LayerNorm scale -> "
               "unembedding; "
            << (k == 1 ? std::string("k = 1: a selected code adds all of it")
                       : "k = " + std::to_string(k) + ": a selected code adds 1/" + std::to_string(k) + " of it")
            << "):\n";
  print_tokens("promoted", effect.promoted, t);
  print_tokens("suppressed", effect.suppressed, t);
  return 0;
}

}  // namespace cb::tools
