// `nurture run RECIPE`: validate a recipe, then run its stages.
#include <iostream>

#include "pipelines/cli/args.h"
#include "pipelines/runner/registries.h"
#include "pipelines/runner/runner.h"

namespace nurture::cli {

int run_command(const std::vector<std::string>& args) {
  po::options_description options("options");
  options.add_options()
      ("recipe", po::value<std::string>(), "the recipe file (YAML)")
      ("set", po::value<std::vector<std::string>>()->composing(),
       "override a setting: --set stages.sft.lr=1e-4 (repeatable; the value is YAML)")
      ("only", po::value<std::string>(), "run only this stage (earlier stages must be done)")
      ("from", po::value<std::string>(), "run this stage and those after it")
      ("force", "run stages again even if they are done (their old outputs are replaced)")
      ("output", po::value<std::string>(), "output directory (replaces the recipe's output_dir)")
      ("dry-run", "validate, print the fully resolved recipe and exit")
      ("describe", po::value<std::string>(), "print the settings a pipeline accepts ('run': the run-wide ones; 'pipelines': the names)")
      ("help,h", "this help");
  po::positional_options_description positional;
  positional.add("recipe", 1);
  auto vm = parse_args("run", args, options, positional);

  if (vm.count("help")) {
    print_help("run RECIPE [--set KEY=VALUE]... [--only|--from STAGE] [--force] [--output DIR] [--dry-run]",
               "Runs a recipe's stages in order, each into <output_dir>/<stage>/.\n"
               "pipelines: " + join_names(registries().pipelines.names()),
               options);
    return kExitOk;
  }
  if (vm.count("describe")) {
    const std::string name = vm["describe"].as<std::string>();
    if (name == "run") {
      std::cout << run_schema()->reference("");
    } else if (name == "pipelines") {
      for (const auto& p : registries().pipelines.names()) std::cout << p << "\n";
    } else {
      const auto& entry = registries().pipelines.get(name);
      std::cout << "pipeline " << name << ": " << entry.help << "\n\n";
      if (!entry.produces.empty())
        std::cout << "Produces: " << kind_names(entry.produces)
                  << " (any setting that asks for it accepts a stage of this pipeline).\n\n";
      std::cout << entry.schema()->reference("stages.<name>");
    }
    return kExitOk;
  }
  if (!vm.count("recipe")) throw UsageError("nurture run: which recipe? e.g. nurture run recipes/quickstart.yaml");
  if (vm.count("only") && vm.count("from"))
    throw UsageError("nurture run: --only and --from cannot be combined");

  RunOptions run;
  if (vm.count("set")) run.overrides = vm["set"].as<std::vector<std::string>>();
  if (vm.count("only")) run.only = vm["only"].as<std::string>();
  if (vm.count("from")) run.from = vm["from"].as<std::string>();
  if (vm.count("output")) run.output = vm["output"].as<std::string>();
  run.force = vm.count("force") > 0;

  Recipe recipe = load_recipe(vm["recipe"].as<std::string>(), run);
  if (vm.count("dry-run")) {
    std::cout << "# resolved from " << recipe.source << "\n" << to_yaml(recipe.resolved);
    return kExitOk;
  }
  return run_recipe(recipe, run);
}

}  // namespace nurture::cli
