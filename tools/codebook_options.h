// Command-line options of the codebook commands: where `compile` puts
// codebooks (--at, --layers, --codes, -k, --groups, --metric, --seed), and
// which interventions `run` and `export` apply (--ablate, --ablate-mode, --disable-topk,
// --disable-slot, --force, --tap; syntax in passes/interventions.h).
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

}  // namespace cb::tools
