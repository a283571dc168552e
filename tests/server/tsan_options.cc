// Default ThreadSanitizer options of the server test binaries in the TSan build (TSAN_OPTIONS
// from `make tsan` adds the suppressions file). Accesses made by uninstrumented libraries
// (gRPC, OpenCV, SQLite, FAISS: Debian builds) are ignored: TSan cannot see their
// synchronisation, while every access from faceid's own code stays checked.
extern "C" const char* __tsan_default_options() { return "ignore_noninstrumented_modules=1"; }
