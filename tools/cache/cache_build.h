// `codebook cache build`: runs a compiled model over a dataset and records
// the codes of every token at every codebook site (tools/cache/cache_format.h).
// Documents stream from the source into model rows (packed, or one document
// per row), rows into batches, batches through the CPU backend with the codes
// of every site tapped (passes/interventions.h tap_all_codes), and everything
// is appended to the cache as it comes, so memory does not grow with the
// dataset. A build can be split into shards (batch b goes to shard b mod N)
// that `codebook cache merge` joins into exactly the unsharded cache.
#pragma once
#include <cstdint>
#include <iosfwd>
#include <string>

#include "tools/cache/cache_format.h"
#include "tools/cache/documents.h"

namespace cb::cache {

struct BuildOptions {
  std::string model;      // the model file (resolved from a run folder)
  std::string model_arg;  // as the user gave it (for the tokenizer lookup)
  std::string out_dir;
  SourceOptions source;
  std::string tokenizer;   // spec; empty: the model's recorded one, else ../shared/data/gpt2-bpe
  std::string block_mode;  // pack | document; empty: document for tokfsm, else pack
  bool truncate = false;   // document mode: drop tokens past block_size (default: more rows)
  int64_t block_size = 0;  // 0: the model's context (tokfsm: the sequence length), else 1024
  int64_t batch_rows = 0;  // 0: about batch_tokens tokens per batch
  int64_t batch_tokens = 4096;
  int64_t max_tokens = -1;  // stop after this many tokens (the last document cut)
  bool scores = false;
  int threads = 2;
  std::string device = "cpu";  // cpu | cuda: the forward passes on the GPU where its kernels can
  int64_t shard_index = -1, shard_count = 0;
  bool resume = false, overwrite = false;
  double checkpoint_seconds = 30;
  // Tests of --resume: record progress and stop (an error) after this many
  // batches have run, as an interrupted build would.
  int64_t stop_after_batches = -1;
  size_t index_memory = size_t(256) << 20;
};

struct BuildResult {
  CacheManifest manifest;
  int64_t tokens_run = 0;  // tokens this process ran through the model
  double seconds = 0;      // wall time of the whole build
  double model_seconds = 0;
};

// `progress`: a bar on a terminal (tty), else one JSON line every few seconds.
BuildResult build_cache(const BuildOptions& options, std::ostream& progress, bool tty);

// The SHA-256 of a model file, or of a Hugging Face folder's files (each
// file's name and SHA-256 in name order).
std::string model_fingerprint(const std::string& path);

}  // namespace cb::cache
