// The source folders of the shipped program: the shared library and one
// folder per process. The build (tsconfig.build.json), the sandbox's compiled
// copy and the import-rule test all read this one list.

/** Shared code: imports only lib/ and libraries. */
export const LIB_DIR = 'lib';

/** One folder per process; none imports another. */
export const PROCESS_DIRS = ['agent', 'cni', 'ztunnel', 'ca', 'waypoint', 'sandbox'] as const;

/** The `meshlet` command: may import each process's entry module only. */
export const CLI_DIR = 'cli';

export const PROCESS_SOURCE_DIRS: readonly string[] = [LIB_DIR, ...PROCESS_DIRS, CLI_DIR];
