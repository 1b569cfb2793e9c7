/// Every error the engine reports: one line that names the culprit and, where there is one, the fix.
public struct ResNeXtError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
