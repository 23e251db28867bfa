// Entry point of the `codebook` command line.
#include <unistd.h>

#include <boost/program_options/errors.hpp>
#include <cstdlib>
#include <cstring>
#include <iostream>

#include "support/error.h"
#include "tools/command.h"
#include "train/collective.h"

namespace cb::tools {

const std::vector<Command>& commands() {
  static const std::vector<Command> cmds = {
      {"inspect", "print a model's parameters, ops, inputs/outputs and layers", cmd_inspect},
      {"compile", "insert codebooks at chosen sites and write the compiled model", cmd_compile},
      {"export", "write a model as ONNX; --standard lowers codebook ops to standard ops", cmd_export},
      {"import-hf", "build a Hugging Face GPT-2/Neo/NeoX checkpoint (or random init) as ONNX", cmd_import_hf},
      {"train", "train codebooks (and the model) from a YAML config; checkpoints, resume", cmd_train},
      {"eval", "loss, perplexity, accuracy and codebook metrics of a model on a dataset", cmd_eval},
      {"fsm-codes", "what a TokFSM model's codes mean: purity, states per code, steering", cmd_fsm_codes},
      {"cache", "the code cache: build (every token's codes over a dataset), merge, info, export", cmd_cache},
      {"search", "codes that fire on the tokens a regex matches in a code cache", cmd_search},
      {"code", "a code's activations and examples in a code cache", cmd_code},
      {"topics", "the topic codes of one document of a code cache", cmd_topics},
      {"serve", "the code browser: a web page and JSON API over a code cache and a live model", cmd_serve},
      {"run", "run a model on inputs (.npy files or token ids) and write its outputs", cmd_run},
      {"generate", "continue a prompt token by token (KV cache), greedy or sampled, with interventions", cmd_generate},
      {"similar", "the codes most similar to one code, and its direct effect on the logits", cmd_similar},
      {"bench", "time the forward pass of a model", cmd_bench},
      {"conformance", "run ONNX backend node tests from a directory", cmd_conformance},
      {"tokenize", "text to token ids and back with a GPT-2 style BPE tokenizer", cmd_tokenize},
  };
  return cmds;
}

static void usage(std::ostream& os) {
  os << "usage: codebook <command> [options]   (codebook <command> --help for details)\n\ncommands:\n";
  for (auto& c : commands()) os << "  " << c.name << std::string(14 - std::strlen(c.name), ' ') << c.summary << "\n";
}

}  // namespace cb::tools

int main(int argc, char** argv) {
  using namespace cb::tools;
  // oneDNN's OpenMP threads sleep while idle (OMP_WAIT_POLICY=passive). Our
  // kernels run on our own pool (support/thread_pool.h), but oneDNN's
  // workers under libgomp's default policy spin for milliseconds (300,000
  // pauses) after every matmul, taking the cores the pool's helpers need:
  // the tiny GPT-2 at 8x128 on 2 threads ran 10x slower on a busy 2-core
  // machine (docs/performance.md#threads).
  // libgomp reads the variable in its constructor, before main(), and
  // glibc's own initialisation (which runs before libgomp's) resets the
  // environment to the one the process started with, so setting it earlier
  // (.preinit_array) does not reach libgomp either: the tool restarts itself
  // once with it set. A value the user gave is kept.
  if (!std::getenv("OMP_WAIT_POLICY")) {
    setenv("OMP_WAIT_POLICY", "passive", 1);
    execv("/proc/self/exe", argv);  // returns only on failure: carry on with the default policy
  }
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    usage(argc < 2 ? std::cerr : std::cout);
    return argc < 2 ? 2 : 0;
  }
  for (auto& c : commands()) {
    if (std::strcmp(argv[1], c.name) != 0) continue;
    // Under mpirun an error stops every rank (cb::abort_job): the others
    // would otherwise wait for this one at their next collective.
    auto fail = [&](const std::string& message) {
      std::cerr << "error: " << cb::rank_prefix() << message << "\n";
      cb::abort_job(2);
      return 2;
    };
    try {
      return c.main(argc - 1, argv + 1);
    } catch (const cb::Error& e) {
      return fail(e.what());
    } catch (const boost::program_options::error& e) {
      return fail(std::string(e.what()) + " (see codebook " + c.name + " --help)");
    } catch (const std::bad_alloc&) {
      return fail("out of memory");
    } catch (const std::exception& e) {
      return fail(e.what());
    }
  }
  std::cerr << "error: unknown command '" << argv[1] << "'\n";
  usage(std::cerr);
  return 2;
}
