import Foundation
import ResNeXt

/// What the process does before anything else, MPI included: make OpenBLAS run the kernel family
/// this processor should get (`BLASKernelChoice`).
enum Startup {
    /// Set in the restarted process to the family OpenBLAS had picked before the restart.
    static let restartedFromVariable = "RESNEXT_OPENBLAS_PICKED"

    /// Decides, and where OpenBLAS picked kernels without FMA on a processor with FMA (and the user
    /// did not set OPENBLAS_CORETYPE), replaces this process by itself with OPENBLAS_CORETYPE set,
    /// arguments unchanged: OpenBLAS reads the variable only when it loads. Every rank of an MPI
    /// job does the same before MPI_Init, so all run the same kernels. Returns the choice only
    /// when no restart happens (the first start without a fix, or the restarted process).
    static func chooseBLASKernels() -> BLASKernelChoice {
        let env = ProcessInfo.processInfo.environment
        let choice = BLASKernelChoice.decide(
            picked: blasCoreName, coretype: env["OPENBLAS_CORETYPE"],
            restartedFrom: env[restartedFromVariable], processor: .current)
        guard case .restart(let picked, let family) = choice else { return choice }
        setenv("OPENBLAS_CORETYPE", family, 1)
        setenv(restartedFromVariable, picked, 1)
        execv("/proc/self/exe", CommandLine.unsafeArgv)
        // only reached when the restart failed: go on with OpenBLAS's choice, and say so
        unsetenv("OPENBLAS_CORETYPE")
        unsetenv(restartedFromVariable)
        return choice
    }

    /// The choice made at start-up (`ResNeXtDDP.main`).
    nonisolated(unsafe) static var blasKernels = BLASKernelChoice.openBLAS(blasCoreName)

    /// The start-up line that says which OpenBLAS kernels run and why.
    static var blasKernelsLine: String { blasKernels.startupLine(running: blasCoreName, processor: .current) }
}
