// Runs the agent: builds the config, loads keys, starts the engine, handles signals.
#pragma once

namespace alknet::agent {

// Returns the process exit code: 0 after a clean shutdown, 1 on a startup error, 2 on usage.
int RunAgent(int argc, const char* const* argv);

}  // namespace alknet::agent
