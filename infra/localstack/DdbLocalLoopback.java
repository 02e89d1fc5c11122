import java.lang.reflect.Field;

import org.eclipse.jetty.server.Connector;
import org.eclipse.jetty.server.Server;
import org.eclipse.jetty.server.ServerConnector;

import software.amazon.dynamodb.services.local.main.ServerRunner;
import software.amazon.dynamodb.services.local.server.DynamoDBProxyServer;

/**
 * Runs AWS DynamoDB Local exactly as its own {@code ServerRunner.main} would (same command-line
 * arguments: {@code -port N -inMemory ...}), except that the HTTP listener is bound to the
 * loopback address instead of every interface.
 *
 * <p>DynamoDB Local's CLI has no "host" option and always listens on 0.0.0.0. Its proxy server
 * keeps the embedded Jetty {@link Server} in a private field named {@code server}; we read it by
 * reflection and set the host on each connector before the server starts (a Jetty connector
 * binds when started, so setting the host beforehand is enough).
 *
 * <p>Bind address: system property {@code zarrshare.ddb.host}, else environment variable
 * {@code DDB_LOCAL_HOST}, else {@code 127.0.0.1}.
 */
public final class DdbLocalLoopback {
    private DdbLocalLoopback() {}

    public static void main(String[] args) throws Exception {
        String host = System.getProperty("zarrshare.ddb.host");
        if (host == null || host.isEmpty()) {
            host = System.getenv("DDB_LOCAL_HOST");
        }
        if (host == null || host.isEmpty()) {
            host = "127.0.0.1";
        }

        DynamoDBProxyServer proxy = ServerRunner.createServerFromCommandLineArgs(args);
        if (proxy == null) {
            // ServerRunner returns null after printing help (-help) or on bad arguments.
            System.exit(1);
        }

        Server jetty = jettyOf(proxy);
        int bound = 0;
        for (Connector connector : jetty.getConnectors()) {
            if (connector instanceof ServerConnector) {
                ((ServerConnector) connector).setHost(host);
                bound++;
            }
        }
        if (bound == 0) {
            // Refuse to run rather than silently listen on every interface.
            throw new IllegalStateException("DynamoDB Local has no Jetty ServerConnector to bind to " + host);
        }

        proxy.start();
        System.err.println("DdbLocalLoopback: DynamoDB Local listening on " + host);
        proxy.join();
    }

    private static Server jettyOf(DynamoDBProxyServer proxy) throws ReflectiveOperationException {
        for (Class<?> c = proxy.getClass(); c != null; c = c.getSuperclass()) {
            for (Field field : c.getDeclaredFields()) {
                if (Server.class.isAssignableFrom(field.getType())) {
                    field.setAccessible(true);
                    return (Server) field.get(proxy);
                }
            }
        }
        throw new NoSuchFieldException("no org.eclipse.jetty.server.Server field in " + proxy.getClass().getName());
    }
}
