import Foundation
import MPIShim
import ResNeXt
import ResNeXtTrain

/// MPI_COMM_WORLD through the C shim. Every call checks its MPI return code; a failed collective
/// ends the job (a rank that goes on alone would hang the others).
final class MPICommunicator: Communicator {
    let rank: Int
    let size: Int

    init() throws {
        let rc = mpi_shim_init()
        guard rc == 0 else { throw ResNeXtError("MPI_Init failed: \(MPICommunicator.errorString(rc))") }
        rank = Int(mpi_shim_rank())
        size = Int(mpi_shim_size())
    }

    static func errorString(_ code: Int32) -> String {
        var text = [CChar](repeating: 0, count: 512)
        mpi_shim_error_string(code, &text, text.count)
        return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    private func check(_ rc: Int32, _ what: String) {
        if rc != 0 { abort("\(what) failed: \(Self.errorString(rc))") }
    }

    func allreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) {
        check(mpi_shim_allreduce_float_sum(buffer, count), "MPI_Allreduce of \(count) floats")
    }

    func startAllreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) {
        check(mpi_shim_iallreduce_float_sum(buffer, count), "MPI_Iallreduce of \(count) floats")
    }

    func progress() -> Bool {
        var done: Int32 = 0
        check(mpi_shim_test_all(&done), "MPI_Testall")
        return done != 0
    }

    func waitAll() { check(mpi_shim_wait_all(), "MPI_Waitall") }

    func allreduceSum(_ values: inout [Double]) {
        let n = values.count
        let rc = values.withUnsafeMutableBufferPointer { mpi_shim_allreduce_double_sum($0.baseAddress!, n) }
        check(rc, "MPI_Allreduce of \(n) doubles")
    }

    func broadcast(_ buffer: UnsafeMutableRawPointer, bytes: Int, root: Int) {
        check(mpi_shim_broadcast(buffer, bytes, Int32(root)), "MPI_Bcast of \(bytes) bytes")
    }

    func barrier() { check(mpi_shim_barrier(), "MPI_Barrier") }

    func abort(_ message: String) -> Never {
        FileHandleOutput.standardError.write("error (rank \(rank) of \(size)): \(message)\n")
        mpi_shim_abort(1)
        exit(1)
    }

    func finalize() { _ = mpi_shim_finalize() }
}

/// True when a launcher (mpirun, srun, ...) started this process as one rank of a job.
var launchedAsRank: Bool {
    let env = ProcessInfo.processInfo.environment
    return ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK"].contains { env[$0] != nil }
}

/// The process group of this run: MPI under a launcher, else a single process.
func makeCommunicator() -> Communicator {
    guard launchedAsRank else { return SingleProcess() }
    do {
        return try MPICommunicator()
    } catch {
        FileHandleOutput.standardError.write("error: \(error)\n")
        exit(1)
    }
}

func finishCommunicator(_ comm: Communicator) {
    (comm as? MPICommunicator)?.finalize()
}

/// Ends the job after an error. A `CollectiveError` is known to every rank at once: its reporter
/// prints it, every rank finalises and exits with status 1. Any other error is this rank's
/// alone: it is printed with the rank and the whole job is aborted, so no rank is left hanging.
func fail(_ comm: Communicator, _ error: Error) -> Never {
    if let collective = error as? CollectiveError {
        if comm.rank == collective.reporter { FileHandleOutput.standardError.write("error: \(collective.message)\n") }
        finishCommunicator(comm)
        exit(1)
    }
    comm.abort("\(error)")
}
