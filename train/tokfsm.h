// The original library's TokFSM toy task: a random finite-state machine
// whose trajectories, written as base-`base` numerals one token per digit, are the
// training data of the TokFSM models; its tokenisation; and the transition
// metrics that score a model's samples against the machine.
//
// Differences from the original (docs/original.md#tokfsm-sampling-and-metrics),
// all deliberate:
//   * digits = the exact integer ceil(log_base N) (smallest d >= 1 with
//     base^d >= N), not a floating-point log.
//   * Bases above 10 use the numeral letters (A = 10, ...) as token strings, so
//     the vocabulary matches the numerals (the original's "10", "11", ... did not).
//   * Reading tokens back into states keeps the positions: the leading BOS and
//     trailing EOS/PAD tokens are removed, but an EOS in the middle makes the
//     one state containing it invalid instead of being deleted and shifting
//     every later state (see tokens_to_states).
//   * next_state_probs works for any N (not only N = base^2).
//   * Random construction uses support/rng.h, not numpy's PCG64, so a seed gives
//     a different machine than the original; the published machine is loaded
//     from its fsm.npy (Fsm::load).
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ir/tensor.h"
#include "support/rng.h"

namespace cb {

// The exact ceil(log_base(num_states)), at least 1: the numeral width of a state.
int64_t fsm_digits(int64_t num_states, int64_t base);

class Fsm {
 public:
  struct Config {
    int64_t num_states = 100;
    int64_t num_edges = 10;  // out-edges per state
    int64_t base = 10;       // numeral base of the states, 2..36
    uint64_t seed = 42;
  };
  // Random construction: with one Rng(seed), for each state i = 0..N-1 in
  // order, choice_without_replacement(N, E) gives i's E distinct successors
  // (self-loops allowed), each with probability 1/E.
  static Fsm random(const Config& config);
  // From a transition matrix f64 (or f32) [N, N]: entries finite and >= 0, every
  // row summing to 1 within 1e-6. Rows are kept as given.
  static Fsm from_matrix(const Tensor& matrix, int64_t base);
  // Reads `path`, or `path`/fsm.npy when `path` is a directory (the original's
  // save layout); the matrix is checked as in from_matrix.
  static Fsm load(const std::string& path, int64_t base);
  // Writes the matrix as float64 [N, N] .npy (the original's fsm.npy format)
  // to `path`, or to `path`/fsm.npy when `path` is an existing directory.
  void save(const std::string& path) const;

  // f64 [N, N]; row i is the distribution of the state after i.
  Tensor matrix() const;
  // The machine run backwards: state t goes to each of its predecessors with
  // probability 1 / in-degree(t). A state without predecessors has no
  // successors in the reversed machine (stepping from it is an error).
  Fsm reversed() const;

  int64_t num_states() const { return num_states_; }
  // Out-degree of state 0 (the original's definition for a loaded matrix);
  // equal to every state's out-degree for a machine built by random().
  int64_t num_edges() const { return out_degree(0); }
  int64_t base() const { return base_; }
  int64_t digits() const { return digits_; }
  int64_t out_degree(int64_t state) const { return int64_t(successors(state).size()); }
  // Successors in ascending order and their probabilities (parallel vectors).
  const std::vector<int64_t>& successors(int64_t state) const;
  const std::vector<double>& successor_probs(int64_t state) const;
  // Predecessors in ascending order.
  const std::vector<int64_t>& predecessors(int64_t state) const;
  double transition_prob(int64_t from, int64_t to) const;
  bool valid_transition(int64_t from, int64_t to) const { return transition_prob(from, to) > 0.0; }

  // --- numerals ------------------------------------------------------------
  // Base-`base` numeral of `state`, left-padded with '0' to digits() characters
  // (digits 0-9, then uppercase letters, like numpy.base_repr).
  std::string state_string(int64_t state) const;
  // The state named by a digits()-character numeral (either letter case), or
  // -1 when it is not a numeral of a state (bad character, value >= N).
  int64_t parse_state(std::string_view numeral) const;
  std::string trajectory_string(std::span<const int64_t> trajectory) const;
  // Whether `input` can begin the string of some trajectory: every complete
  // numeral names a state, consecutive states are valid transitions, and a
  // trailing partial numeral is the beginning of the numeral of a successor of
  // the previous state (of any state when there is none). For N = base^digits
  // and inputs of at most digits+1 characters this is the original's
  // valid_input (shorter inputs always valid; digits+1 characters valid iff the
  // last one starts the numeral of a successor); it also covers any N and any
  // length.
  bool valid_input(std::string_view input) const;

  // --- sampling ------------------------------------------------------------
  // The next state after `state`: u = rng.uniform_double(), the first successor
  // (ascending) whose cumulative probability exceeds u.
  int64_t step(int64_t state, Rng& rng) const;
  // A trajectory of `length` states: the first uniform over 0..N-1
  // (rng.below(N)), then length-1 steps.
  std::vector<int64_t> trajectory(int64_t length, Rng& rng) const;
  // One trajectory of `length` states from each start state (the start is the
  // first state), all drawn from `rng` in order.
  std::vector<std::vector<int64_t>> trajectories_from(std::span<const int64_t> starts, int64_t length, Rng& rng) const;

  // --- tokens ----------------------------------------------------------------
  // Vocabulary: ids 0..base-1 are the digit tokens, id base is
  // <|endoftext|> (BOS = EOS = PAD).
  int64_t vocab_size() const { return base_ + 1; }
  int64_t special_id() const { return base_; }
  std::string token_string(int64_t id) const;   // "7", "B", "<|endoftext|>"
  std::vector<std::string> vocabulary() const;  // token_string of every id
  // One digit token per numeral character, states in order.
  std::vector<int64_t> trajectory_tokens(std::span<const int64_t> trajectory) const;
  // States a training sample of `seq_len` tokens draws: ceil((seq_len-1)/digits)
  // (= seq_len/digits, the original's count, whenever digits divides seq_len).
  int64_t sample_states(int64_t seq_len) const;
  // A training sample: [BOS] + trajectory_tokens(trajectory(sample_states(T))),
  // truncated to T = seq_len tokens. As in the original, the digits of the
  // states do not fill T-1 slots exactly, so the final digit (digits = 2, T
  // even) is dropped: [BOS, d1 ... d_{T-1}]. labels = input_ids.
  std::vector<int64_t> sample_tokens(int64_t seq_len, Rng& rng) const;

  // The states of a token sequence, position-aligned: one leading BOS (the
  // prompt) and any trailing run of EOS/PAD tokens are removed, the rest is
  // read in digits-token chunks, a trailing partial chunk is dropped. A chunk
  // holding a non-digit token (a mid-sequence EOS, an id out of range) or
  // naming no state (value >= N) gives state -1; later chunks stay aligned.
  std::vector<int64_t> tokens_to_states(std::span<const int64_t> tokens) const;

 private:
  int64_t num_states_ = 0, base_ = 10, digits_ = 1;
  std::vector<std::vector<int64_t>> succ_;
  std::vector<std::vector<double>> prob_;
  std::vector<std::vector<int64_t>> pred_;
  void check_state(int64_t state, const char* what) const;
  void build_predecessors();
};

// The original's transition metrics (eval_transition_accuracy and
// eval_first_transition_accuracy).
struct TransitionAccuracy {
  double overall = 0.0;     // valid_pairs / pairs (0 when there are no pairs)
  double first = 0.0;       // first_valid / sequences (0 when there are none)
  int64_t pairs = 0;        // consecutive state pairs
  int64_t valid_pairs = 0;  // pairs with nonzero transition probability
  int64_t sequences = 0;
  int64_t first_valid = 0;  // sequences whose first pair is valid
};
// State -1 (unreadable) makes every pair it is part of invalid. A sequence
// with fewer than two states has no pairs and counts as not first-valid.
TransitionAccuracy transition_accuracy(const Fsm& fsm, const std::vector<std::vector<int64_t>>& state_sequences);
// On token sequences, read with Fsm::tokens_to_states.
TransitionAccuracy token_transition_accuracy(const Fsm& fsm, const std::vector<std::vector<int64_t>>& token_sequences);
// On an integer tensor [B, T] of token ids (the rows are the sequences).
TransitionAccuracy token_transition_accuracy(const Fsm& fsm, const Tensor& tokens);

// A model's next-token distribution: for each prefix (token ids, all of equal
// length), the probabilities of the next token over the whole vocabulary
// (vocab_size() values). Keeps the metric independent of the model code.
using NextTokenProbs =
    std::function<std::vector<std::vector<double>>(const std::vector<std::vector<int64_t>>& prefixes)>;

// For each given state s, the model's probability of each next state t
// (N values): P(t) = prod_j P(digit_j(t) | BOS, numeral(s), digit_1(t) ...
// digit_{j-1}(t)), the digit probabilities read unrenormalised from the
// vocabulary distribution. Prefixes are enumerated over the numerals of 0..N-1
// only, so this works for any N; one call of `model` per digit position.
std::vector<std::vector<double>> next_state_probs(const Fsm& fsm, std::span<const int64_t> states,
                                                  const NextTokenProbs& model);
// Fraction of the out_degree(state) most probable next states (ties: lower
// state first) that are true successors of `state`.
double correct_next_state_fraction(const Fsm& fsm, int64_t state, std::span<const double> next_probs);
// Mean of correct_next_state_fraction over all N states (the tutorial's
// first_transition_accuracy).
double first_transition_accuracy(const Fsm& fsm, const NextTokenProbs& model);

}  // namespace cb
