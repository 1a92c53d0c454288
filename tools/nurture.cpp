// The `nurture` executable. All logic lives in the libraries (pipelines/cli.cpp).
#include "pipelines/cli.h"

int main(int argc, char** argv) { return nurture::cli::main(argc, argv); }
