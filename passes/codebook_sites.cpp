#include "passes/codebook_sites.h"

#include <regex>
#include <sstream>

#include "support/error.h"

namespace cb {

namespace {

const char* point_name(SitePoint p) {
  switch (p) {
    case SitePoint::input: return "input";
    case SitePoint::resid_mid: return "resid_mid";
    case SitePoint::attn_pattern: return "attn_pattern";
    case SitePoint::placement: break;
  }
  return "?";
}

// TransformerLens hook names (blocks.L.<hook>) and our site each stands for;
// only hooks holding the same values (docs/interventions.md#site-names).
struct LensAlias {
  const char* hook;
  SitePoint point;
  Placement placement;
};
const LensAlias kLensAliases[] = {
    {"hook_resid_pre", SitePoint::input, Placement::mlp},
    {"hook_resid_mid", SitePoint::resid_mid, Placement::mlp},
    {"hook_resid_post", SitePoint::placement, Placement::transformer_block},
    {"attn.hook_z", SitePoint::placement, Placement::attn_preproj},
    {"attn.hook_pattern", SitePoint::attn_pattern, Placement::mlp},
    {"hook_attn_out", SitePoint::placement, Placement::attn},
    {"mlp.hook_post", SitePoint::placement, Placement::mlp_mid},
    {"hook_mlp_out", SitePoint::placement, Placement::mlp},
};

}  // namespace

std::string SiteRef::site() const {
  return "layer" + std::to_string(layer) + "." +
         (point == SitePoint::placement ? placement_name(placement) : point_name(point));
}

std::string SiteRef::name() const { return group == kAll ? site() : site() + "[" + std::to_string(group) + "]"; }

int64_t parse_int(const std::string& item, const std::string& what, const std::string& context) {
  size_t used = 0;
  int64_t v = 0;
  try {
    v = std::stoll(item, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  CB_CHECK(!item.empty() && used == item.size(), "bad " << what << " '" << item << "'"
                                                        << (context.empty() ? "" : " in '" + context + "'")
                                                        << ": not an integer");
  return v;
}

std::string int_list_text(const std::vector<int64_t>& v) {
  std::string s;
  for (int64_t x : v) s += (s.empty() ? "" : ",") + std::to_string(x);
  return s;
}

std::vector<int64_t> parse_int_list(const std::string& text, const std::string& what, const std::string& context) {
  std::vector<int64_t> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(parse_int(item, what, context));
  CB_CHECK(!out.empty(), "no " << what << " in '" << (context.empty() ? text : context) << "'");
  return out;
}

SiteRef parse_site(const std::string& text, int64_t num_layers) {
  static const std::regex canonical(R"(layer(-?\d+)\.([a-z_]+)(?:\[(\d+)\])?)");
  static const std::regex alias(R"(layer(-?\d+)_([a-z_]+?)(?:_gcb(\d+))?)");
  static const std::regex lens(R"(blocks\.(-?\d+)\.([a-z_.]+)(?:\[(\d+)\])?)");
  std::smatch m;
  bool is_lens = std::regex_match(text, m, lens);
  if (!is_lens && !std::regex_match(text, m, canonical) && !std::regex_match(text, m, alias))
    CB_FAIL("bad site '" << text << "': expected layer{L}.{placement} or layer{L}.{placement}[{member}] "
                         << "(e.g. layer0.mlp, layer3.attn_preproj[5], layer0.input, layer0.attn_pattern), "
                         << "an alias like layer3_attn_preproj_gcb5, or a TransformerLens name like "
                         << "blocks.3.hook_resid_pre");
  SiteRef s;
  try {
    s.layer = std::stoll(m[1]);
    std::string point = m[2];
    if (is_lens) {
      const LensAlias* found = nullptr;
      std::string known;
      for (const LensAlias& a : kLensAliases) {
        if (point == a.hook) found = &a;
        known += std::string(known.empty() ? "" : ", ") + a.hook;
      }
      CB_CHECK(found, "TransformerLens hook '" << point << "' has no counterpart here (known: " << known << ")");
      s.point = found->point;
      s.placement = found->placement;
    } else if (point == "input") {
      s.point = SitePoint::input;
    } else if (point == "resid_mid") {
      s.point = SitePoint::resid_mid;
    } else if (point == "attn_pattern") {
      s.point = SitePoint::attn_pattern;
    } else {
      s.placement = parse_placement(point);
    }
    if (m[3].matched) s.group = std::stoll(m[3]);
    CB_CHECK(s.group == kAll || s.is_codebook_site(),
             s.site() << " is an activation, not a codebook site: it has no members");
  } catch (const Error& e) {
    CB_FAIL("bad site '" << text << "': " << e.what());
  } catch (const std::exception&) {
    CB_FAIL("bad site '" << text << "': number out of range");
  }
  if (num_layers > 0) {
    CB_CHECK(s.layer >= -num_layers && s.layer < num_layers,
             "bad site '" << text << "': the model has layers 0.." << num_layers - 1);
    if (s.layer < 0) s.layer += num_layers;
  }
  return s;
}

}  // namespace cb
