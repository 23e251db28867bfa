// The TokFSM machine, its tokenisation and transition metrics; see tokfsm.h.
#include "train/tokfsm.h"

#include <sys/stat.h>

#include <algorithm>
#include <cmath>

#include "frontend/npy.h"

namespace cb {

namespace {

constexpr const char* kSpecialToken = "<|endoftext|>";

char digit_char(int64_t v) { return char(v < 10 ? '0' + v : 'A' + (v - 10)); }

// The value of a numeral character, or -1.
int64_t digit_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'Z') return c - 'A' + 10;
  if (c >= 'a' && c <= 'z') return c - 'a' + 10;
  return -1;
}

bool is_directory(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

}  // namespace

int64_t fsm_digits(int64_t num_states, int64_t base) {
  CB_CHECK(num_states >= 1, "TokFSM: the number of states must be at least 1, got " << num_states);
  CB_CHECK(base >= 2 && base <= 36, "TokFSM: the representation base must be in 2..36, got " << base);
  int64_t digits = 1, capacity = base;  // capacity = base^digits
  while (capacity < num_states) {
    ++digits;
    capacity = capacity > num_states / base ? num_states : capacity * base;  // no overflow
  }
  return digits;
}

// ---------------------------------------------------------------------------
// Construction, loading, saving

void Fsm::build_predecessors() {
  pred_.assign(size_t(num_states_), {});
  for (int64_t s = 0; s < num_states_; ++s)
    for (int64_t t : succ_[size_t(s)]) pred_[size_t(t)].push_back(s);  // s ascending: sorted
}

Fsm Fsm::random(const Config& c) {
  CB_CHECK(c.num_edges >= 1 && c.num_edges <= c.num_states,
           "TokFSM: num_edges must be in 1..num_states (" << c.num_states << "), got " << c.num_edges);
  Fsm f;
  f.num_states_ = c.num_states;
  f.base_ = c.base;
  f.digits_ = fsm_digits(c.num_states, c.base);
  f.succ_.resize(size_t(c.num_states));
  f.prob_.resize(size_t(c.num_states));
  Rng rng(c.seed);
  for (int64_t s = 0; s < c.num_states; ++s) {
    std::vector<int64_t> next = rng.choice_without_replacement(c.num_states, c.num_edges);
    std::sort(next.begin(), next.end());
    f.succ_[size_t(s)] = std::move(next);
    f.prob_[size_t(s)].assign(size_t(c.num_edges), 1.0 / double(c.num_edges));
  }
  f.build_predecessors();
  return f;
}

Fsm Fsm::from_matrix(const Tensor& m, int64_t base) {
  CB_CHECK(m.dtype() == DType::f64 || m.dtype() == DType::f32,
           "TokFSM: the transition matrix must be f64 or f32, got " << dtype_name(m.dtype()));
  CB_CHECK(m.rank() == 2 && m.dim(0) == m.dim(1) && m.dim(0) >= 1,
           "TokFSM: the transition matrix must be square [N, N], got " << dims_str(m.dims()));
  const int64_t n = m.dim(0);
  Fsm f;
  f.num_states_ = n;
  f.base_ = base;
  f.digits_ = fsm_digits(n, base);
  f.succ_.resize(size_t(n));
  f.prob_.resize(size_t(n));
  for (int64_t s = 0; s < n; ++s) {
    double sum = 0.0;
    for (int64_t t = 0; t < n; ++t) {
      double p = m.get_double(s * n + t);
      CB_CHECK(std::isfinite(p) && p >= 0.0,
               "TokFSM: transition matrix entry [" << s << ", " << t << "] = " << p << " is not a probability");
      if (p > 0.0) {
        f.succ_[size_t(s)].push_back(t);
        f.prob_[size_t(s)].push_back(p);
        sum += p;
      }
    }
    CB_CHECK(std::abs(sum - 1.0) <= 1e-6,
             "TokFSM: row " << s << " of the transition matrix sums to " << sum << ", not 1");
  }
  f.build_predecessors();
  return f;
}

Fsm Fsm::load(const std::string& path, int64_t base) {
  std::string file = is_directory(path) ? path + "/fsm.npy" : path;
  try {
    return from_matrix(npy_read(file), base);
  } catch (const Error& e) {
    CB_FAIL("TokFSM: cannot load " << file << ": " << e.what());
  }
}

void Fsm::save(const std::string& path) const { npy_write(is_directory(path) ? path + "/fsm.npy" : path, matrix()); }

Tensor Fsm::matrix() const {
  Tensor m = Tensor::zeros(DType::f64, {num_states_, num_states_});
  double* d = m.data<double>();
  for (int64_t s = 0; s < num_states_; ++s)
    for (size_t i = 0; i < succ_[size_t(s)].size(); ++i) d[s * num_states_ + succ_[size_t(s)][i]] = prob_[size_t(s)][i];
  return m;
}

Fsm Fsm::reversed() const {
  Fsm r;
  r.num_states_ = num_states_;
  r.base_ = base_;
  r.digits_ = digits_;
  r.succ_ = pred_;
  r.prob_.resize(size_t(num_states_));
  for (int64_t t = 0; t < num_states_; ++t)
    r.prob_[size_t(t)].assign(pred_[size_t(t)].size(), 1.0 / double(std::max<size_t>(1, pred_[size_t(t)].size())));
  r.build_predecessors();
  return r;
}

void Fsm::check_state(int64_t state, const char* what) const {
  CB_CHECK(state >= 0 && state < num_states_,
           "TokFSM " << what << ": state " << state << " is not in 0.." << num_states_ - 1);
}

const std::vector<int64_t>& Fsm::successors(int64_t state) const {
  check_state(state, "successors");
  return succ_[size_t(state)];
}

const std::vector<double>& Fsm::successor_probs(int64_t state) const {
  check_state(state, "successor_probs");
  return prob_[size_t(state)];
}

const std::vector<int64_t>& Fsm::predecessors(int64_t state) const {
  check_state(state, "predecessors");
  return pred_[size_t(state)];
}

double Fsm::transition_prob(int64_t from, int64_t to) const {
  check_state(from, "transition_prob");
  check_state(to, "transition_prob");
  const auto& s = succ_[size_t(from)];
  auto it = std::lower_bound(s.begin(), s.end(), to);
  return it != s.end() && *it == to ? prob_[size_t(from)][size_t(it - s.begin())] : 0.0;
}

// ---------------------------------------------------------------------------
// Numerals

std::string Fsm::state_string(int64_t state) const {
  check_state(state, "state_string");
  std::string s(size_t(digits_), '0');
  for (int64_t i = digits_ - 1; i >= 0 && state > 0; --i, state /= base_) s[size_t(i)] = digit_char(state % base_);
  return s;
}

int64_t Fsm::parse_state(std::string_view numeral) const {
  if (int64_t(numeral.size()) != digits_) return -1;
  int64_t v = 0;
  for (char c : numeral) {
    int64_t d = digit_value(c);
    if (d < 0 || d >= base_) return -1;
    v = v * base_ + d;
  }
  return v < num_states_ ? v : -1;
}

std::string Fsm::trajectory_string(std::span<const int64_t> trajectory) const {
  std::string out;
  for (int64_t s : trajectory) out += state_string(s);
  return out;
}

bool Fsm::valid_input(std::string_view original_input) const {
  std::string upper(original_input);
  for (char& c : upper)
    if (c >= 'a' && c <= 'z') c = char(c - 'a' + 'A');
  std::string_view input = upper;
  int64_t prev = -1;
  size_t pos = 0;
  for (; pos + size_t(digits_) <= input.size(); pos += size_t(digits_)) {
    int64_t s = parse_state(input.substr(pos, size_t(digits_)));
    if (s < 0 || (prev >= 0 && !valid_transition(prev, s))) return false;
    prev = s;
  }
  std::string_view partial = input.substr(pos);
  if (partial.empty()) return true;
  for (char c : partial) {
    int64_t d = digit_value(c);
    if (d < 0 || d >= base_) return false;
  }
  auto starts_partial = [&](int64_t t) { return state_string(t).compare(0, partial.size(), partial) == 0; };
  if (prev >= 0) return std::any_of(succ_[size_t(prev)].begin(), succ_[size_t(prev)].end(), starts_partial);
  // The smallest state whose numeral starts with `partial`, padded with zeros.
  std::string smallest(partial);
  smallest.resize(size_t(digits_), '0');
  int64_t v = 0;
  for (char c : smallest) v = v * base_ + digit_value(c);
  return v < num_states_;
}

// ---------------------------------------------------------------------------
// Sampling

int64_t Fsm::step(int64_t state, Rng& rng) const {
  check_state(state, "step");
  const auto& s = succ_[size_t(state)];
  const auto& p = prob_[size_t(state)];
  CB_CHECK(!s.empty(), "TokFSM step: state " << state << " has no successors");
  const double u = rng.uniform_double();
  double cumulative = 0.0;
  for (size_t i = 0; i < s.size(); ++i) {
    cumulative += p[i];
    if (u < cumulative) return s[i];
  }
  return s.back();  // u above a cumulative sum rounded below 1
}

std::vector<int64_t> Fsm::trajectory(int64_t length, Rng& rng) const {
  CB_CHECK(length >= 1, "TokFSM trajectory: length must be at least 1, got " << length);
  std::vector<int64_t> t(static_cast<size_t>(length));
  t[0] = int64_t(rng.below(uint64_t(num_states_)));
  for (int64_t i = 1; i < length; ++i) t[size_t(i)] = step(t[size_t(i - 1)], rng);
  return t;
}

std::vector<std::vector<int64_t>> Fsm::trajectories_from(std::span<const int64_t> starts, int64_t length,
                                                         Rng& rng) const {
  CB_CHECK(length >= 1, "TokFSM trajectories_from: length must be at least 1, got " << length);
  std::vector<std::vector<int64_t>> out;
  out.reserve(starts.size());
  for (int64_t start : starts) {
    check_state(start, "trajectories_from");
    std::vector<int64_t> t(static_cast<size_t>(length));
    t[0] = start;
    for (int64_t i = 1; i < length; ++i) t[size_t(i)] = step(t[size_t(i - 1)], rng);
    out.push_back(std::move(t));
  }
  return out;
}

// ---------------------------------------------------------------------------
// Tokens

std::string Fsm::token_string(int64_t id) const {
  CB_CHECK(id >= 0 && id <= base_, "TokFSM: token id " << id << " is not in 0.." << base_);
  return id == base_ ? std::string(kSpecialToken) : std::string(1, digit_char(id));
}

std::vector<std::string> Fsm::vocabulary() const {
  std::vector<std::string> v;
  for (int64_t id = 0; id < vocab_size(); ++id) v.push_back(token_string(id));
  return v;
}

std::vector<int64_t> Fsm::trajectory_tokens(std::span<const int64_t> trajectory) const {
  std::vector<int64_t> tokens;
  tokens.reserve(trajectory.size() * size_t(digits_));
  for (int64_t s : trajectory) {
    check_state(s, "trajectory_tokens");
    size_t at = tokens.size();
    tokens.resize(at + size_t(digits_));
    for (int64_t i = digits_ - 1; i >= 0; --i, s /= base_) tokens[at + size_t(i)] = s % base_;
  }
  return tokens;
}

int64_t Fsm::sample_states(int64_t seq_len) const {
  CB_CHECK(seq_len >= 2, "TokFSM: a sample needs at least 2 tokens (BOS and a digit), got seq_len " << seq_len);
  return (seq_len - 1 + digits_ - 1) / digits_;
}

std::vector<int64_t> Fsm::sample_tokens(int64_t seq_len, Rng& rng) const {
  std::vector<int64_t> digits = trajectory_tokens(trajectory(sample_states(seq_len), rng));
  std::vector<int64_t> tokens;
  tokens.reserve(size_t(seq_len));
  tokens.push_back(special_id());
  tokens.insert(tokens.end(), digits.begin(), digits.begin() + (seq_len - 1));
  return tokens;
}

std::vector<int64_t> Fsm::tokens_to_states(std::span<const int64_t> tokens) const {
  size_t begin = 0, end = tokens.size();
  if (begin < end && tokens[begin] == special_id()) ++begin;
  while (end > begin && tokens[end - 1] == special_id()) --end;
  std::vector<int64_t> states;
  for (size_t at = begin; at + size_t(digits_) <= end; at += size_t(digits_)) {
    int64_t v = 0;
    for (size_t i = 0; i < size_t(digits_) && v >= 0; ++i) {
      int64_t d = tokens[at + i];
      v = d >= 0 && d < base_ ? v * base_ + d : -1;
    }
    states.push_back(v < num_states_ ? v : -1);
  }
  return states;
}

// ---------------------------------------------------------------------------
// Metrics

TransitionAccuracy transition_accuracy(const Fsm& fsm, const std::vector<std::vector<int64_t>>& seqs) {
  TransitionAccuracy a;
  auto valid = [&](int64_t s, int64_t t) {
    return s >= 0 && t >= 0 && s < fsm.num_states() && t < fsm.num_states() && fsm.valid_transition(s, t);
  };
  for (const auto& seq : seqs) {
    ++a.sequences;
    for (size_t i = 1; i < seq.size(); ++i) {
      bool ok = valid(seq[i - 1], seq[i]);
      ++a.pairs;
      a.valid_pairs += ok;
      if (i == 1) a.first_valid += ok;
    }
  }
  a.overall = a.pairs ? double(a.valid_pairs) / double(a.pairs) : 0.0;
  a.first = a.sequences ? double(a.first_valid) / double(a.sequences) : 0.0;
  return a;
}

TransitionAccuracy token_transition_accuracy(const Fsm& fsm, const std::vector<std::vector<int64_t>>& token_seqs) {
  std::vector<std::vector<int64_t>> states;
  states.reserve(token_seqs.size());
  for (const auto& t : token_seqs) states.push_back(fsm.tokens_to_states(t));
  return transition_accuracy(fsm, states);
}

TransitionAccuracy token_transition_accuracy(const Fsm& fsm, const Tensor& tokens) {
  CB_CHECK(tokens.rank() == 2 && dtype_is_int(tokens.dtype()),
           "TokFSM transition accuracy: tokens must be an integer tensor [B, T], got " << dtype_name(tokens.dtype())
                                                                                       << dims_str(tokens.dims()));
  std::vector<int64_t> all = tokens.to_int_vector();
  const size_t rows = size_t(tokens.dim(0)), cols = size_t(tokens.dim(1));
  std::vector<std::vector<int64_t>> seqs(rows);
  for (size_t r = 0; r < rows; ++r) seqs[r].assign(all.begin() + r * cols, all.begin() + (r + 1) * cols);
  return token_transition_accuracy(fsm, seqs);
}

std::vector<std::vector<double>> next_state_probs(const Fsm& fsm, std::span<const int64_t> states,
                                                  const NextTokenProbs& model) {
  const int64_t n = fsm.num_states(), base = fsm.base(), digits = fsm.digits();
  std::vector<std::vector<double>> probs(states.size(), std::vector<double>(size_t(n), 1.0));
  std::vector<std::vector<int64_t>> state_tokens;
  for (int64_t s : states) state_tokens.push_back(fsm.trajectory_tokens(std::span<const int64_t>(&s, 1)));
  // span = base^(digits - j): the states sharing a j-digit prefix p are
  // [p * span, (p + 1) * span) intersected with [0, N).
  int64_t span = 1;
  for (int64_t j = 0; j < digits; ++j) span *= base;
  for (int64_t j = 0; j < digits; ++j) {
    span /= base;  // now base^(digits - j - 1): states per prefix of j+1 digits
    const int64_t prefix_span = span * base;
    const int64_t num_prefixes = (n + prefix_span - 1) / prefix_span;
    std::vector<std::vector<int64_t>> batch;
    batch.reserve(states.size() * size_t(num_prefixes));
    for (size_t si = 0; si < states.size(); ++si) {
      for (int64_t p = 0; p < num_prefixes; ++p) {
        std::vector<int64_t> prefix{fsm.special_id()};
        prefix.insert(prefix.end(), state_tokens[si].begin(), state_tokens[si].end());
        prefix.resize(prefix.size() + size_t(j));
        for (int64_t k = 0, v = p; k < j; ++k, v /= base) prefix[prefix.size() - 1 - size_t(k)] = v % base;
        batch.push_back(std::move(prefix));
      }
    }
    std::vector<std::vector<double>> out = model(batch);
    CB_CHECK(out.size() == batch.size(), "TokFSM next_state_probs: the model returned "
                                             << out.size() << " distributions for " << batch.size() << " prefixes");
    for (size_t si = 0; si < states.size(); ++si) {
      for (int64_t t = 0; t < n; ++t) {
        const auto& dist = out[si * size_t(num_prefixes) + size_t(t / prefix_span)];
        CB_CHECK(int64_t(dist.size()) == fsm.vocab_size(), "TokFSM next_state_probs: the model returned "
                                                               << dist.size() << " probabilities, the vocabulary has "
                                                               << fsm.vocab_size());
        probs[si][size_t(t)] *= dist[size_t((t / span) % base)];
      }
    }
  }
  return probs;
}

double correct_next_state_fraction(const Fsm& fsm, int64_t state, std::span<const double> next_probs) {
  CB_CHECK(int64_t(next_probs.size()) == fsm.num_states(),
           "TokFSM correct_next_state_fraction: " << next_probs.size() << " probabilities for " << fsm.num_states()
                                                  << " states");
  const int64_t k = fsm.out_degree(state);
  CB_CHECK(k > 0, "TokFSM correct_next_state_fraction: state " << state << " has no successors");
  std::vector<int64_t> order(next_probs.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = int64_t(i);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return next_probs[size_t(a)] > next_probs[size_t(b)]; });
  int64_t correct = 0;
  for (int64_t i = 0; i < k; ++i) correct += fsm.valid_transition(state, order[size_t(i)]);
  return double(correct) / double(k);
}

double first_transition_accuracy(const Fsm& fsm, const NextTokenProbs& model) {
  std::vector<int64_t> all(size_t(fsm.num_states()));
  for (int64_t s = 0; s < fsm.num_states(); ++s) all[size_t(s)] = s;
  std::vector<std::vector<double>> probs = next_state_probs(fsm, all, model);
  double sum = 0.0;
  for (int64_t s = 0; s < fsm.num_states(); ++s) sum += correct_next_state_fraction(fsm, s, probs[size_t(s)]);
  return sum / double(fsm.num_states());
}

}  // namespace cb
