// Einsum equation parsing (see einsum_equation.h).
#include "ir/ops/einsum_equation.h"

#include <algorithm>
#include <map>

#include "support/error.h"

namespace cb {
namespace {

struct Term {
  std::string letters;   // the letters, in order, without the ellipsis
  int ellipsis_at = -1;  // index in `letters` before which "..." stands, or -1
};

bool is_label(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

Term parse_term(const std::string& s, const std::string& equation) {
  Term t;
  for (size_t i = 0; i < s.size();) {
    if (is_label(s[i])) {
      t.letters += s[i++];
    } else if (s.compare(i, 3, "...") == 0) {
      CB_CHECK(t.ellipsis_at < 0,
               "einsum equation '" << equation << "': term '" << s << "' has more than one ellipsis");
      t.ellipsis_at = int(t.letters.size());
      i += 3;
    } else {
      CB_FAIL("einsum equation '" << equation << "': unexpected character '" << s[i] << "' in term '" << s << "'");
    }
  }
  return t;
}

}  // namespace

EinsumPlan plan_einsum(const std::string& equation, const std::vector<size_t>& ranks) {
  std::string eq;
  for (char c : equation)
    if (c != ' ' && c != '\t' && c != '\n') eq += c;
  size_t arrow = eq.find("->");
  CB_CHECK(arrow == std::string::npos || eq.find("->", arrow + 2) == std::string::npos,
           "einsum equation '" << equation << "' has more than one '->'");
  std::string lhs = arrow == std::string::npos ? eq : eq.substr(0, arrow);
  std::vector<Term> terms;
  for (size_t start = 0;;) {
    size_t comma = lhs.find(',', start);
    terms.push_back(parse_term(lhs.substr(start, comma - start), equation));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  CB_CHECK(terms.size() == ranks.size(), "einsum equation '" << equation << "' has " << terms.size()
                                                             << " operand terms but the node has " << ranks.size()
                                                             << " inputs");

  // Number of dims each operand's ellipsis covers; E is the broadcast count.
  std::vector<size_t> ellipsis_dims(terms.size(), 0);
  size_t E = 0;
  for (size_t k = 0; k < terms.size(); ++k) {
    size_t n = terms[k].letters.size();
    if (terms[k].ellipsis_at < 0) {
      CB_CHECK(ranks[k] == n, "einsum equation '" << equation << "': operand " << k << " has rank " << ranks[k]
                                                  << " but its term names " << n << " dims");
    } else {
      CB_CHECK(ranks[k] >= n, "einsum equation '" << equation << "': operand " << k << " has rank " << ranks[k]
                                                  << ", fewer than the " << n << " letters of its term");
      ellipsis_dims[k] = ranks[k] - n;
      E = std::max(E, ellipsis_dims[k]);
    }
  }

  EinsumPlan plan;
  std::map<char, int> letter_id;
  std::map<char, int> letter_count;
  int next = int(E);
  for (auto& t : terms)
    for (char c : t.letters) {
      if (!letter_id.count(c)) letter_id[c] = next++;
      letter_count[c]++;
    }
  plan.num_labels = next;

  for (size_t k = 0; k < terms.size(); ++k) {
    const Term& t = terms[k];
    std::vector<int> labels;
    for (size_t i = 0; i <= t.letters.size(); ++i) {
      if (int(i) == t.ellipsis_at)
        for (size_t e = E - ellipsis_dims[k]; e < E; ++e) labels.push_back(int(e));
      if (i < t.letters.size()) labels.push_back(letter_id[t.letters[i]]);
    }
    plan.operand_labels.push_back(std::move(labels));
  }

  if (arrow == std::string::npos) {
    for (size_t e = 0; e < E; ++e) plan.output_labels.push_back(int(e));
    for (auto& [c, count] : letter_count)  // std::map iterates in ASCII order
      if (count == 1) plan.output_labels.push_back(letter_id[c]);
  } else {
    Term out = parse_term(eq.substr(arrow + 2), equation);
    CB_CHECK(out.ellipsis_at >= 0 || E == 0, "einsum equation '"
                                                 << equation
                                                 << "': the operands have ellipsis dims but the output has no "
                                                    "'...'");
    for (size_t i = 0; i <= out.letters.size(); ++i) {
      if (int(i) == out.ellipsis_at)
        for (size_t e = 0; e < E; ++e) plan.output_labels.push_back(int(e));
      if (i == out.letters.size()) break;
      char c = out.letters[i];
      CB_CHECK(letter_id.count(c),
               "einsum equation '" << equation << "': output letter '" << c << "' does not occur in any operand");
      CB_CHECK(out.letters.find(c) == i,
               "einsum equation '" << equation << "': output letter '" << c << "' occurs twice");
      plan.output_labels.push_back(letter_id[c]);
    }
  }
  return plan;
}

}  // namespace cb
