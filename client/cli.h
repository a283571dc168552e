// The `faceid` command line: parses the arguments (CLI11), connects to faceid-server and runs
// one sub-command (enroll, enroll-dir, identify, verify, detect, embed, people, person, rename,
// delete, galleries, info, health, bench). The binary's main() only forwards to RunCli, so the
// tests run exactly this code.
//
// Thread-safety: RunCli may run in several threads at once with different streams; it touches
// no global state apart from reading the FACEID_SERVER and FACEID_API_KEY environment variables.
#pragma once

#include <ostream>

namespace faceid {

// Runs `argv` (argv[0] is the program name). Writes results to `out` and errors, progress and
// hints to `err`. Returns the process exit code: kExitOk, kExitRequestFailed (a request failed;
// the gRPC code name and message were printed) or kExitUsage (bad command line, help shown).
// --help and --version return kExitOk.
int RunCli(int argc, const char* const* argv, std::ostream& out, std::ostream& err);

}  // namespace faceid
