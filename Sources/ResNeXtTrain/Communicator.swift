import ResNeXt

#if canImport(Glibc)
    import Glibc
#endif

/// What data parallelism needs from the process group. The trainer has one code path: a single
/// process is a group of size 1 (`SingleProcess`); MPI ranks implement the same interface.
public protocol Communicator: AnyObject {
    var rank: Int { get }
    var size: Int { get }
    /// In-place sum over all ranks.
    func allreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int)
    /// Starts an in-place sum over all ranks and returns at once; the buffer must not be touched
    /// until `waitAll`. Every rank starts the same reductions in the same order.
    func startAllreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int)
    /// The same for bfloat16 values (their bits, `roundToBFloat16`): each partial sum is rounded
    /// to the nearest bfloat16, so every rank gets the same bits.
    func startAllreduceSumBFloat16(_ buffer: UnsafeMutablePointer<UInt16>, count: Int)
    /// Lets the started reductions advance; true when all of them have completed.
    func progress() -> Bool
    /// Waits until every started reduction has completed.
    func waitAll()
    /// In-place sum of a few doubles over all ranks.
    func allreduceSum(_ values: inout [Double])
    /// Rank `root`'s bytes to every rank.
    func broadcast(_ buffer: UnsafeMutableRawPointer, bytes: Int, root: Int)
    func barrier()
    /// Stops every rank of the job with this message.
    func abort(_ message: String) -> Never
    /// Ends this process's part in the group (MPI_Finalize); call it once, last.
    func finish()
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
    public func startAllreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) {}
    public func startAllreduceSumBFloat16(_ buffer: UnsafeMutablePointer<UInt16>, count: Int) {}
    public func progress() -> Bool { true }
    public func waitAll() {}
    public func broadcast(_ buffer: UnsafeMutableRawPointer, bytes: Int, root: Int) {}
    public func barrier() {}
    public func finish() {}
    public func abort(_ message: String) -> Never {
        FileHandleOutput.standardError.write("error: \(message)\n")
        exit(1)
    }
}

/// An error every rank knows at the same moment (bad settings, a diverged loss, a replica
/// mismatch): `reporter` prints it once and every rank stops cleanly.
public struct CollectiveError: Error, CustomStringConvertible {
    public let message: String
    public let reporter: Int
    public init(_ message: String, reporter: Int = 0) { self.message = message; self.reporter = reporter }
    public var description: String { message }
}

extension Communicator {
    /// Runs `body` on every rank. If it throws on any rank, every rank throws a `CollectiveError`
    /// carrying the message of the lowest failing rank, which is the one that reports it: a
    /// failure on one rank never leaves the others waiting in a collective.
    public func agree<R>(_ body: () throws -> R) throws -> R {
        var result: R? = nil
        var message = ""
        do { result = try body() } catch let e as CollectiveError { message = e.message } catch { message = "\(error)" }
        if size == 1 {
            if let result { return result }
            throw CollectiveError(message)
        }
        var failed = [Double](repeating: 0, count: size)
        failed[rank] = result == nil ? 1 : 0
        allreduceSum(&failed)
        guard let first = failed.firstIndex(where: { $0 != 0 }) else { return result! }
        throw CollectiveError(first == rank ? message : "", reporter: first)
    }
}
