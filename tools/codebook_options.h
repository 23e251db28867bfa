// Command-line options of the codebook commands: where `compile` puts
// codebooks (--at, --layers, --codes, -k, --groups, --metric, --seed), and
// which interventions `run` and `export` apply (--ablate, --ablate-mode, --disable-topk,
// --disable-slot, --force, --force-file, --tap; syntax in passes/interventions.h),
// and which sites `run --show-codes` prints.
#pragma once
#include <boost/program_options.hpp>

#include "passes/insert_codebooks.h"
#include "passes/interventions.h"

namespace cb::tools {

void add_codebook_options(boost::program_options::options_description& opts);
// The insertion config; throws cb::Error naming a bad option value.
CodebookConfig codebook_config_from_options(const boost::program_options::variables_map& vm);

void add_intervention_options(boost::program_options::options_description& opts);
InterventionSet interventions_from_options(const boost::program_options::variables_map& vm);

// The sites of `--show-codes` values: site names (aliases too), comma lists,
// or `all` (every codebook of `g`, in graph order); layers resolved. Throws
// cb::Error naming --show-codes and the site when it is not a codebook of `g`.
std::vector<SiteRef> shown_sites(Graph& g, const std::vector<std::string>& values);
// The ids [B, T, G, k] of each shown site from the run's outputs (SITE.ids, as
// --tap SITE makes them); a member site[g] gets its member alone [B, T, 1, k].
std::vector<std::pair<std::string, Tensor>> shown_codes(const std::vector<SiteRef>& sites,
                                                        const std::vector<std::string>& names,
                                                        const std::vector<Tensor>& outs);

}  // namespace cb::tools
