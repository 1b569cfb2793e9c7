import ResNeXtTrain

/// The process group of this run: a single process for now.
func makeCommunicator() -> Communicator { SingleProcess() }

func finishCommunicator(_ comm: Communicator) {}
