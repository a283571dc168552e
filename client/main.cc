// faceid: the command-line client of faceid-server. See client/cli.h.
#include <iostream>

#include "client/cli.h"

int main(int argc, char** argv) { return faceid::RunCli(argc, argv, std::cout, std::cerr); }
