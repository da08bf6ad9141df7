// alknet-agent: the daemon's entry point; all work happens in agent_runner.
#include "agent/agent_runner.h"

int main(int argc, char** argv) { return alknet::agent::RunAgent(argc, argv); }
