import Foundation
import ResNeXtTrain

/// True when a launcher (mpirun, srun, ...) started this process as one rank of a job.
public var launchedAsRank: Bool {
    let env = ProcessInfo.processInfo.environment
    return ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK"].contains { env[$0] != nil }
}

/// The process group of this run: MPI under a launcher, else a single process.
public func makeCommunicator() -> Communicator {
    guard launchedAsRank else { return SingleProcess() }
    do {
        return try MPICommunicator()
    } catch {
        FileHandleOutput.standardError.write("error: \(error)\n")
        exit(1)
    }
}

/// Ends the job after an error. A `CollectiveError` is known to every rank at once: its reporter
/// prints it, every rank finalises and exits with status 1. Any other error is this rank's
/// alone: it is printed with the rank and the whole job is aborted, so no rank is left hanging.
public func fail(_ comm: Communicator, _ error: Error) -> Never {
    if let collective = error as? CollectiveError {
        if comm.rank == collective.reporter { FileHandleOutput.standardError.write("error: \(collective.message)\n") }
        comm.finish()
        exit(1)
    }
    comm.abort("\(error)")
}
