import ArgumentParser
import ResNeXtMPI
import ResNeXtTrain

/// `resnext-ddp train` with one fault injected on one rank, for the tests of what a failing rank
/// does to a job (MPITests): the same trainer over the same MPI communicator, wrapped in
/// `FaultyCommunicator`. Test machinery only: the product has no fault switch.
@main
struct FaultyTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resnext-ddp-faults",
        abstract: "resnext-ddp train with a fault injected: --fault rank=R,step=S,kind=error|diverge, then train's options.")

    @Option(
        help:
            "rank=R,step=S,kind=error|diverge: at training step S (from 1), rank R stops with an error, or its gradients move so that its weights differ from the other ranks'."
    )
    var fault: Fault
    @OptionGroup var settings: TrainSettings

    func run() throws {
        let comm = FaultyCommunicator(makeCommunicator(), fault: fault)
        let trainer = Trainer(settings: settings, comm: comm) { FileHandleOutput.standardOutput.write($0 + "\n") }
        do {
            _ = try trainer.run()
        } catch {
            fail(comm, error)
        }
        comm.finish()
    }
}

struct Fault: ExpressibleByArgument {
    enum Kind: String { case error, diverge }
    let rank: Int, step: Int, kind: Kind

    init?(argument: String) {
        var fields: [String: String] = [:]
        for part in argument.split(separator: ",") {
            let kv = part.split(separator: "=", maxSplits: 1).map(String.init)
            guard kv.count == 2 else { return nil }
            fields[kv[0]] = kv[1]
        }
        guard let rank = fields["rank"].flatMap(Int.init), let step = fields["step"].flatMap(Int.init),
            let kind = Kind(rawValue: fields["kind"] ?? "error")
        else { return nil }
        (self.rank, self.step, self.kind) = (rank, step, kind)
    }
}

/// A communicator that counts training steps (one `waitAll` each, the end of the gradient
/// allreduce) and, at the fault's step on the fault's rank, either ends the job as a rank's error
/// does (`abort`) or moves the first reduced gradient before the update, so that this replica's
/// weights silently leave the others'. Everything else goes to `inner`.
final class FaultyCommunicator: Communicator {
    let inner: Communicator
    let fault: Fault
    private var steps = 0
    private var lastStarted: UnsafeMutablePointer<Float>?

    init(_ inner: Communicator, fault: Fault) {
        self.inner = inner
        self.fault = fault
    }

    var rank: Int { inner.rank }
    var size: Int { inner.size }

    func startAllreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) {
        lastStarted = buffer
        inner.startAllreduceSum(buffer, count: count)
    }

    func startAllreduceSumBFloat16(_ buffer: UnsafeMutablePointer<UInt16>, count: Int) {
        inner.startAllreduceSumBFloat16(buffer, count: count)
    }

    func waitAll() {
        inner.waitAll()
        steps += 1
        guard rank == fault.rank, steps == fault.step else { return }
        switch fault.kind {
        case .error: inner.abort("injected fault at step \(steps)")
        case .diverge: lastStarted?[0] += 1
        }
    }

    func progress() -> Bool { inner.progress() }
    func allreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) { inner.allreduceSum(buffer, count: count) }
    func allreduceSum(_ values: inout [Double]) { inner.allreduceSum(&values) }
    func broadcast(_ buffer: UnsafeMutableRawPointer, bytes: Int, root: Int) { inner.broadcast(buffer, bytes: bytes, root: root) }
    func barrier() { inner.barrier() }
    func abort(_ message: String) -> Never { inner.abort(message) }
    func finish() { inner.finish() }
}
