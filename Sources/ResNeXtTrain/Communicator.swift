import ResNeXt

/// What data parallelism needs from the process group. The trainer has one code path: a single
/// process is a group of size 1 (`SingleProcess`); MPI ranks implement the same interface.
public protocol Communicator: AnyObject {
    var rank: Int { get }
    var size: Int { get }
    /// In-place sum over all ranks.
    func allreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int)
    /// In-place sum of a few doubles over all ranks.
    func allreduceSum(_ values: inout [Double])
    /// Rank `root`'s bytes to every rank.
    func broadcast(_ buffer: UnsafeMutableRawPointer, bytes: Int, root: Int)
    func barrier()
    /// Stops every rank of the job with this message.
    func abort(_ message: String) -> Never
}

extension Communicator {
    public var isRoot: Bool { rank == 0 }
}

/// A process group of one.
public final class SingleProcess: Communicator {
    public init() {}
    public var rank: Int { 0 }
    public var size: Int { 1 }
    public func allreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) {}
    public func allreduceSum(_ values: inout [Double]) {}
    public func broadcast(_ buffer: UnsafeMutableRawPointer, bytes: Int, root: Int) {}
    public func barrier() {}
    public func abort(_ message: String) -> Never {
        FileHandleOutput.standardError.write("error: \(message)\n")
        exit(1)
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// Unbuffered writes to stdout / stderr (progress lines must appear at once under mpirun).
public struct FileHandleOutput: Sendable {
    let fd: Int32
    public static let standardOutput = FileHandleOutput(fd: 1)
    public static let standardError = FileHandleOutput(fd: 2)
    public func write(_ s: String) {
        var bytes = Array(s.utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeMutableBytes { Glibc.write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if n <= 0 { return }
            offset += n
        }
    }
}
