import Foundation
import MPIShim
import ResNeXt
import ResNeXtTrain

/// MPI_COMM_WORLD through the C shim. Every call checks its MPI return code; a failed collective
/// ends the job (a rank that goes on alone would hang the others).
public final class MPICommunicator: Communicator {
    public let rank: Int
    public let size: Int

    public init() throws {
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

    public func allreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) {
        check(mpi_shim_allreduce_float_sum(buffer, count), "MPI_Allreduce of \(count) floats")
    }

    public func startAllreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) {
        check(mpi_shim_iallreduce_float_sum(buffer, count), "MPI_Iallreduce of \(count) floats")
    }

    public func startAllreduceSumBFloat16(_ buffer: UnsafeMutablePointer<UInt16>, count: Int) {
        check(mpi_shim_iallreduce_bf16_sum(buffer, count), "MPI_Iallreduce of \(count) bfloat16 values")
    }

    public func progress() -> Bool {
        var done: Int32 = 0
        check(mpi_shim_test_all(&done), "MPI_Testall")
        return done != 0
    }

    public func waitAll() { check(mpi_shim_wait_all(), "MPI_Waitall") }

    public func allreduceSum(_ values: inout [Double]) {
        let n = values.count
        let rc = values.withUnsafeMutableBufferPointer { mpi_shim_allreduce_double_sum($0.baseAddress!, n) }
        check(rc, "MPI_Allreduce of \(n) doubles")
    }

    public func broadcast(_ buffer: UnsafeMutableRawPointer, bytes: Int, root: Int) {
        check(mpi_shim_broadcast(buffer, bytes, Int32(root)), "MPI_Bcast of \(bytes) bytes")
    }

    public func barrier() { check(mpi_shim_barrier(), "MPI_Barrier") }

    public func abort(_ message: String) -> Never {
        FileHandleOutput.standardError.write("error (rank \(rank) of \(size)): \(message)\n")
        mpi_shim_abort(1)
        exit(1)
    }

    public func finish() { _ = mpi_shim_finalize() }
}
