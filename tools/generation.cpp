#include "tools/generation.h"

#include <algorithm>
#include <chrono>

#include "passes/codebook_sites.h"
#include "support/error.h"
#include "support/json.h"

namespace cb::tools {

void StopConditions::add(const std::string& value) {
  CB_CHECK(!value.empty(), "--stop-at: give token ids (a comma list) or text");
  const std::string prefix = "text:";
  if (value.rfind(prefix, 0) == 0) {
    CB_CHECK(value.size() > prefix.size(), "--stop-at " << value << ": no text after 'text:'");
    texts.push_back(value.substr(prefix.size()));
  } else if (value.find_first_not_of("0123456789,") == std::string::npos) {
    sequences.push_back(parse_int_list(value, "--stop-at token id"));
    for (int64_t id : sequences.back()) CB_CHECK(id >= 0, "--stop-at: token id " << id << " is negative");
  } else {
    texts.push_back(value);
  }
}

std::vector<int64_t> model_eos_ids(const std::map<std::string, std::string>& metadata) {
  auto it = metadata.find("hf_config");
  if (it == metadata.end()) return {};
  Json config;
  try {
    config = json_parse(it->second, "the model's hf_config metadata");
  } catch (const Error&) {
    return {};  // not ours to validate here: the model loaded
  }
  const Json* eos = config.is_object() ? config.find("eos_token_id") : nullptr;
  std::vector<int64_t> ids;
  if (eos && eos->is_integer() && eos->as_int() >= 0) ids.push_back(eos->as_int());
  if (eos && eos->is_array())
    for (const Json& id : eos->as_array())
      if (id.is_integer() && id.as_int() >= 0) ids.push_back(id.as_int());
  return ids;
}

namespace {

bool ends_with(const std::vector<int64_t>& ids, const std::vector<int64_t>& tail) {
  return !tail.empty() && ids.size() >= tail.size() && std::equal(tail.rbegin(), tail.rend(), ids.rbegin());
}

// One prompt being continued.
struct Row {
  size_t prompt = 0;  // index in the request
  Sampler sampler;
  std::string text;  // the new tokens' bytes (with stop texts)
  bool done = false;
};

// The stop condition the row's newest token meets, or "".
std::string stop_met(const GenerationRequest& r, const Continuation& c, Row& row) {
  for (const std::vector<int64_t>& s : r.stop.sequences)
    if (ends_with(c.ids, s)) {
      std::string ids;
      for (int64_t id : s) ids += (ids.empty() ? "" : ",") + std::to_string(id);
      return "stop-at " + ids;
    }
  if (r.stop.texts.empty()) return "";
  const size_t before = row.text.size();
  row.text += r.text->token_bytes(c.ids.back());
  for (const std::string& t : r.stop.texts) {
    // Only a match that ends in the newest token's bytes is new.
    const size_t from = before >= t.size() ? before - t.size() + 1 : 0;
    if (row.text.find(t, from) != std::string::npos) return "stop-at text " + escape_bytes(t);
  }
  return "";
}

}  // namespace

std::vector<Continuation> generate_continuations(Generator& gen, const GenerationRequest& r,
                                                 const std::function<void(size_t, int64_t)>& on_token,
                                                 GenerationStats* stats) {
  using Clock = std::chrono::steady_clock;
  CB_CHECK(!r.prompts.empty(), "generate: no prompt given");
  CB_CHECK(r.max_new >= 0, "generate: max_new must be >= 0, got " << r.max_new);
  CB_CHECK(r.stop.texts.empty() || r.text, "--stop-at text needs the model's tokenizer");
  std::vector<int64_t> lengths;  // distinct prompt lengths, in order of first appearance
  for (size_t i = 0; i < r.prompts.size(); ++i) {
    const int64_t n = int64_t(r.prompts[i].size());
    CB_CHECK(n > 0, "generate: prompt " << i << " has no tokens");
    CB_CHECK(n <= gen.context(), "generate: prompt " << i << " has " << n << " tokens; the model's context is "
                                                     << gen.context() << " tokens");
    if (std::find(lengths.begin(), lengths.end(), n) == lengths.end()) lengths.push_back(n);
  }
  GenerationStats local;
  GenerationStats& st = stats ? *stats : local;
  std::vector<Continuation> out(r.prompts.size());
  for (int64_t length : lengths) {
    std::vector<Row> rows;
    std::vector<std::vector<int64_t>> batch;
    for (size_t i = 0; i < r.prompts.size(); ++i) {
      if (int64_t(r.prompts[i].size()) != length) continue;
      SamplingOptions s = r.sampling;
      s.seed += uint64_t(i);
      rows.push_back(Row{i, Sampler(s), "", false});
      batch.push_back(r.prompts[i]);
    }
    auto t0 = Clock::now();
    const std::vector<float>* logits = &gen.prefill_batch(batch);
    st.prefill_s += std::chrono::duration<double>(Clock::now() - t0).count();
    ++st.batches;
    std::vector<int64_t> next(rows.size(), 0);
    size_t running = rows.size();
    auto finish = [&](const char* why) {
      for (Row& row : rows)
        if (!row.done) out[row.prompt].stop = why;
    };
    // The sequence is prompt + produced tokens; each new token must fit the context.
    if (r.max_new == 0 || gen.length() >= gen.context()) {
      finish(r.max_new == 0 ? "max-new" : "context");
      continue;
    }
    for (int64_t produced = 1;; ++produced) {
      const int64_t V = gen.vocab();
      for (size_t b = 0; b < rows.size(); ++b) {
        Row& row = rows[b];
        if (row.done) continue;  // its slot in the batch runs on, unread
        Continuation& c = out[row.prompt];
        next[b] = row.sampler.next(logits->data() + int64_t(b) * V, V);
        c.ids.push_back(next[b]);
        ++st.new_tokens;
        if (on_token) on_token(row.prompt, next[b]);
        std::string stop = stop_met(r, c, row);
        if (!stop.empty()) {
          c.stop = stop;
          row.done = true;
          --running;
        }
      }
      if (running == 0) break;
      if (produced == r.max_new || gen.length() + 1 >= gen.context()) {
        finish(produced == r.max_new ? "max-new" : "context");
        break;
      }
      if (r.deadline && Clock::now() >= *r.deadline) {
        finish("time");
        break;
      }
      auto t1 = Clock::now();
      logits = &gen.step_batch(next);
      st.decode_s += std::chrono::duration<double>(Clock::now() - t1).count();
      ++st.steps;
    }
  }
  return out;
}

}  // namespace cb::tools
