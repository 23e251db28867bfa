#include "tools/intervention_checks.h"

#include <algorithm>
#include <map>

#include "ir/codebook.h"
#include "passes/insert_codebooks.h"
#include "support/error.h"

namespace cb::tools {

namespace {

// How the user wrote the intervention (its option and site), for the warning.
std::string described(const Intervention& it) {
  std::string s = std::string(intervention_option(it.kind)) + " " + it.site.name() + ":" + int_list_text(it.values);
  if (!it.positions.empty()) s += "@" + int_list_text(it.positions);
  if (it.has_slot) s += "#" + std::to_string(it.slot);
  return s;
}

}  // namespace

void check_intervention_positions(const InterventionSet& iv, int64_t seq_len) {
  for (const Intervention& it : iv.items)
    for (int64_t p : it.positions)
      CB_CHECK(p < seq_len && p >= -seq_len, described(it) << ": position " << p << " is past the sequence of "
                                                           << seq_len << " tokens (positions 0.." << seq_len - 1
                                                           << ", or -" << seq_len << "..-1 from the end)");
}

bool needs_clean_ids(const InterventionSet& iv) {
  for (const Intervention& it : iv.items)
    if (it.kind == InterventionKind::ablate || it.kind == InterventionKind::force) return true;
  return false;
}

void tap_intervened_sites(Graph& g, const InterventionSet& iv) {
  if (iv.items.empty()) return;
  InterventionSet taps;
  int64_t layers = num_layers_of(g);
  for (const Intervention& it : iv.items) {
    std::string site = parse_site(it.site.site(), layers).site();
    if (find_codebook_node(g, site) && std::find(taps.taps.begin(), taps.taps.end(), site) == taps.taps.end())
      taps.taps.push_back(site);
  }
  apply_interventions(g, taps);
}

void warn_ineffective_interventions(const InterventionSet& iv, int64_t num_layers, int64_t seq_len,
                                    const std::map<std::string, const Tensor*>& clean, std::ostream& err) {
  for (const Intervention& it : iv.items) {
    std::string what = "warning: " + described(it) + ": ";
    // Positions inside the sequence, normalised to 0..T-1.
    std::vector<int64_t> positions;
    if (seq_len >= 0) {
      for (int64_t p : it.positions) {
        if (p >= seq_len || p < -seq_len)
          err << what << "position " << p << " is past the sequence (" << seq_len
              << " tokens): nothing changes there\n";
        else
          positions.push_back(p < 0 ? p + seq_len : p);
      }
      if (it.positions.empty())
        for (int64_t p = 0; p < seq_len; ++p) positions.push_back(p);
    }
    if (it.kind == InterventionKind::disable_topk && it.values[0] == 0)
      err << what << "disabling the top 0 codes changes nothing\n";
    auto found = clean.find(parse_site(it.site.site(), num_layers).site() + ".ids");
    if (found == clean.end() || positions.empty()) continue;
    const Tensor& ids = *found->second;  // [B, T, G, k]
    int64_t B = ids.dim(0), T = ids.dim(1), G = ids.dim(2), k = ids.dim(3);
    auto slot_code = [&](int64_t b, int64_t p, int64_t g, int64_t slot) {
      return ids.data<int64_t>()[((b * T + p) * G + g) * k + slot];
    };
    auto members = [&] {
      std::vector<int64_t> m;
      for (int64_t g = 0; g < G; ++g)
        if (it.site.group == kAll || it.site.group == g) m.push_back(g);
      return m;
    }();
    if (it.kind == InterventionKind::ablate) {
      // Codes by the positions where they are not selected: one line per set.
      std::map<std::vector<int64_t>, std::vector<int64_t>> codes_unselected_at;
      for (int64_t code : it.values) {
        std::vector<int64_t> unselected;
        for (int64_t p : positions) {
          bool selected = false;
          for (int64_t b = 0; b < B; ++b)
            for (int64_t g : members)
              for (int64_t s = 0; s < k && p < T; ++s) selected |= slot_code(b, p, g, s) == code;
          if (!selected) unselected.push_back(p);
        }
        bool nowhere = unselected.size() == positions.size();
        if (!unselected.empty() && (nowhere || !it.positions.empty())) codes_unselected_at[unselected].push_back(code);
      }
      for (auto& [at, codes] : codes_unselected_at) {
        std::string subject = (codes.size() > 1 ? "codes " : "code ") + int_list_text(codes) +
                              (codes.size() > 1 ? " are not selected at " : " is not selected at ");
        if (it.positions.empty())
          err << what << subject << "any position in the run without interventions: ablating "
              << (codes.size() > 1 ? "them" : "it") << " changes nothing\n";
        else
          err << what << subject << (at.size() > 1 ? "positions " : "position ") << int_list_text(at)
              << " in the run without interventions: ablating " << (codes.size() > 1 ? "them" : "it")
              << " there changes nothing\n";
      }
    } else if (it.kind == InterventionKind::force) {
      bool any_change = false;
      for (int64_t b = 0; b < B; ++b)
        for (int64_t p : positions)
          for (int64_t g : members)
            for (size_t i = 0; i < it.values.size(); ++i) {
              int64_t slot = it.has_slot ? it.slot + int64_t(i) : -1 - int64_t(i);
              if (slot < 0) slot += k;
              any_change |= slot < 0 || slot >= k || p >= T || slot_code(b, p, g, slot) != it.values[i];
            }
      if (!any_change)
        err << what
            << "the run without interventions already has these codes in these slots: forcing them changes nothing\n";
    }
  }
}

}  // namespace cb::tools
