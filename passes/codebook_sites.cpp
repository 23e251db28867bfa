#include "passes/codebook_sites.h"

#include <regex>
#include <sstream>

#include "support/error.h"

namespace cb {

std::string SiteRef::site() const { return "layer" + std::to_string(layer) + "." + placement_name(placement); }

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
  std::smatch m;
  if (!std::regex_match(text, m, canonical) && !std::regex_match(text, m, alias))
    CB_FAIL("bad site '" << text << "': expected layer{L}.{placement} or layer{L}.{placement}[{member}] "
                         << "(e.g. layer0.mlp, layer3.attn_preproj[5]) or an alias like layer3_attn_preproj_gcb5");
  SiteRef s;
  try {
    s.layer = std::stoll(m[1]);
    s.placement = parse_placement(m[2]);
    if (m[3].matched) s.group = std::stoll(m[3]);
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
